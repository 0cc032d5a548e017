using System.Runtime.CompilerServices;

namespace VmmKit.Hypercall.Tests;

/// <summary>The register layout contract that lets a VMM pass its own registers (HypercallRegisters remarks).</summary>
public class RegisterViewTests
{
    // A VMM's register block in the contract's order, as VmmKit.Vmx.GuestRegisters declares it.
#pragma warning disable CS0649 // fields set through the view
    private struct VmmRegisters
    {
        public ulong Rax, Rcx, Rdx, Rbx, Rbp, Rsi, Rdi, R8, R9, R10, R11, R12, R13, R14, R15;
    }

    private struct Smaller
    {
        public ulong Rax, Rcx;
    }
#pragma warning restore CS0649

    [Fact]
    public void Fields_are_in_x86_encoding_order_without_rsp()
    {
        var r = default(HypercallRegisters);
        long Off(ref ulong field) => Unsafe.ByteOffset(ref Unsafe.As<HypercallRegisters, ulong>(ref r), ref field);
        Assert.Equal([0L, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112],
            [Off(ref r.Rax), Off(ref r.Rcx), Off(ref r.Rdx), Off(ref r.Rbx), Off(ref r.Rbp), Off(ref r.Rsi), Off(ref r.Rdi),
             Off(ref r.R8), Off(ref r.R9), Off(ref r.R10), Off(ref r.R11), Off(ref r.R12), Off(ref r.R13), Off(ref r.R14), Off(ref r.R15)]);
        Assert.Equal(HypercallRegisters.Size, Unsafe.SizeOf<HypercallRegisters>());
    }

    [Fact]
    public void Dispatch_through_a_view_reads_and_writes_the_vmm_registers_in_place()
    {
        var dispatcher = new HypercallDispatcher<int>();
        dispatcher.Register(HypercallNumber.XenVersion, (ref HypercallCall<int> call) => (long)(call.Argument(0) + call.Argument(1)));
        var vmm = new VmmRegisters { Rax = (ulong)HypercallNumber.XenVersion, Rdi = 40, Rsi = 2, R11 = 0x1111, R15 = 0x5555 };
        ref HypercallRegisters view = ref HypercallRegisters.View(ref vmm);
        Assert.Equal(HypercallDisposition.Completed, dispatcher.Dispatch(0, ref view, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 4096)));
        Assert.Equal(42ul, vmm.Rax);
        Assert.Equal((40ul, 2ul, 0x1111ul, 0x5555ul), (vmm.Rdi, vmm.Rsi, vmm.R11, vmm.R15));

        var i386 = new VmmRegisters { Rax = (ulong)HypercallNumber.XenVersion, Rbx = 7, Rcx = 8 };
        dispatcher.Dispatch(0, ref HypercallRegisters.View(ref i386), GuestX86Mode.Protected32, 0, new FlatGuestMemory(0, 4096));
        Assert.Equal(15ul, i386.Rax);
    }

    [Fact]
    public void A_struct_of_another_size_is_refused()
    {
        var s = new Smaller();
        Assert.Throws<ArgumentException>(() => HypercallRegisters.View(ref s).Rax);
    }
}
