using System.Text;
using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

/// <summary>The README's example, kept compiling and correct.</summary>
public class ReadmeExampleTests
{
    private sealed record Vcpu(int DomainId);

    private sealed class ArrayMemory(byte[] bytes) : IGuestVirtualMemory
    {
        public byte[] Bytes { get; } = bytes;
        public bool TryRead(ulong gva, Span<byte> destination) =>
            gva <= (ulong)Bytes.Length && (ulong)destination.Length <= (ulong)Bytes.Length - gva
            && Bytes.AsSpan((int)gva, destination.Length).TryCopyTo(destination);
        public bool TryWrite(ulong gva, ReadOnlySpan<byte> source) =>
            gva <= (ulong)Bytes.Length && (ulong)source.Length <= (ulong)Bytes.Length - gva
            && source.TryCopyTo(Bytes.AsSpan((int)gva));
    }

    private static readonly StringBuilder Output = new();

    private static long ConsoleWrite(ref HypercallCall<Vcpu> call)
    {
        Span<byte> text = stackalloc byte[(int)Math.Min(call.Argument(1), 256)];
        if (!call.TryCopyFromGuest(call.Argument(2), text))
            return XenErrno.EFAULT.Negated();
        Output.Append(Encoding.UTF8.GetString(text));
        return 0;
    }

    [Fact]
    public void Console_write_from_a_64_bit_guest()
    {
        var dispatcher = new HypercallDispatcher<Vcpu>
        {
            Policy = new HypercallPrivilegePolicy<Vcpu>(v => v.DomainId == 0),
        };
        dispatcher.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Version,
            (ref HypercallCall<Vcpu> call) => 4 << 16 | 17);
        dispatcher.RegisterSubOp(HypercallNumber.ConsoleIo, (uint)ConsoleIoCommand.Write, ConsoleWrite);

        var memory = new ArrayMemory(new byte[4096]);
        "hello"u8.CopyTo(memory.Bytes.AsSpan(0x100));
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.ConsoleIo, Rdi = 0, Rsi = 5, Rdx = 0x100 };

        HypercallDisposition disposition = dispatcher.Dispatch(new Vcpu(DomainId: 1), ref regs, GuestX86Mode.Long64, cpl: 0, memory);
        Assert.Equal(HypercallDisposition.Completed, disposition);
        Assert.Equal(0L, (long)regs.Rax);
        Assert.Equal("hello", Output.ToString());

        regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.XenVersion };
        dispatcher.Dispatch(new Vcpu(DomainId: 1), ref regs, GuestX86Mode.Long64, cpl: 0, memory);
        Assert.Equal(0x0004_0011UL, regs.Rax);

        regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.ConsoleIo, Rdi = 0, Rsi = 5, Rdx = 0xFFFF_0000 };
        dispatcher.Dispatch(new Vcpu(DomainId: 1), ref regs, GuestX86Mode.Long64, cpl: 0, memory);
        Assert.Equal(-14L, (long)regs.Rax);
    }
}
