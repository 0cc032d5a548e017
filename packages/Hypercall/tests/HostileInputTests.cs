using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

/// <summary>Random register sets and random multicall lists never throw on the host and always leave a result or a continuation.</summary>
public unsafe class HostileInputTests
{
    private static long CopiesStruct(ref HypercallCall<TestVcpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out XenMemoryMap map))
            return XenErrno.EFAULT.Negated();
        Span<byte> buffer = stackalloc byte[64];
        if (!call.TryCopyFromGuest(map.Buffer, buffer[..(int)Math.Min(map.NrEntries, 64u)]))
            return XenErrno.EFAULT.Negated();
        return call.TryCopyToGuest(call.Argument(1), in map) ? 0 : XenErrno.EFAULT.Negated();
    }

    private static long Continues(ref HypercallCall<TestVcpu> call) =>
        (call.Argument(0) & 3) == 0 ? call.CreateContinuation(call.Number, [call.Argument(0) + 1]) : 0;

    [Fact]
    public void Random_calls_never_throw()
    {
        var d = new HypercallDispatcher<TestVcpu> { Policy = new HypercallPrivilegePolicy<TestVcpu>(v => v.Privileged) };
        d.RegisterSubOp(HypercallNumber.MemoryOp, (uint)MemoryOp.MemoryMap, &CopiesStruct);
        d.Register(HypercallNumber.SchedOp, &Continues);
        d.Register(HypercallNumber.Domctl, &Continues);
        int preemptCalls = 0;
        d.PreemptCheck = _ => (++preemptCalls & 7) == 0;
        var memory = new FlatGuestMemory(0x10000, 0x4000);
        var random = new Random(1234);
        var vcpu = new TestVcpu(2);
        GuestX86Mode[] modes = Enum.GetValues<GuestX86Mode>();
        ulong[] interesting = [0, 1, 9, 12, 13, 29, 36, 63, 64, 0x10000, 0x13FC0, 0x13FFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000];

        ulong Pick() => random.Next(3) switch
        {
            0 => interesting[random.Next(interesting.Length)],
            1 => 0x10000 + (ulong)random.Next(0x4000),
            _ => (ulong)random.NextInt64(),
        };

        for (int iteration = 0; iteration < 20000; iteration++)
        {
            // Guest memory full of plausible multicall entries and structures.
            if (iteration % 100 == 0)
            {
                random.NextBytes(memory.Bytes);
                for (int i = 0; i < 64; i++)
                {
                    var e = new MulticallEntry { Op = (ulong)random.Next(70) };
                    for (int k = 0; k < 6; k++)
                        e.Args[k] = Pick();
                    MemoryMarshal.Write(memory.Bytes.AsSpan(i * 64), in e);
                }
            }

            var regs = new HypercallRegisters
            {
                Rax = random.Next(4) == 0 ? Pick() : (ulong)random.Next(70),
                Rbx = Pick(), Rcx = Pick(), Rdx = Pick(), Rsi = Pick(), Rdi = Pick(), Rbp = Pick(), R8 = Pick(), R9 = Pick(), R10 = Pick(),
            };
            GuestX86Mode mode = modes[random.Next(modes.Length)];
            int cpl = random.Next(4) == 0 ? random.Next(4) : 0;

            for (int reentry = 0; reentry < 100; reentry++)
            {
                if (d.Dispatch(vcpu, ref regs, mode, cpl, memory) == HypercallDisposition.Completed)
                    break;
            }
        }
    }
}
