using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// XSETBV exits (src/Exits/XsetbvExit.cs) against Xen 4.17's <c>hvm_handle_xsetbv</c> (xen/arch/x86/hvm/hvm.c),
/// <c>x86emul_write_xcr</c> and <c>handle_xsetbv</c>/<c>valid_xcr0</c> (xen/arch/x86/xstate.c): XCR0 only, within the
/// CPUID policy's leaf 0xD (x87 and SSE), x87 always set; anything else #GP(0) with XCR0 unchanged.
/// </summary>
public class XsetbvExitTests
{
    private const ulong Rip = 0x100000;

    [Theory]
    [InlineData(0u, 1ul, true)]
    [InlineData(0u, 3ul, true)]
    [InlineData(0u, 2ul, false)]                  // valid_xcr0: "FP must be unconditionally set"
    [InlineData(0u, 7ul, false)]                  // YMM: outside the policy's xcr0_max (no AVX)
    [InlineData(0u, 1ul << 32, false)]
    [InlineData(1u, 1ul, false)]                  // x86emul_write_xcr: only XCR0
    public void Xsetbv_follows_handle_xsetbv(uint index, ulong value, bool taken)
    {
        var (machine, d) = HypercallMachine.Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        v.Vmcs.Write(VmcsField.GuestRip, Rip);
        (v.Registers.Rcx, v.Registers.Rax, v.Registers.Rdx) = (index, (uint)value, value >> 32);
        var exit = VmExit.Exit(VmxExitReason.Xsetbv) with { InstructionLength = 3 };
        Assert.Equal(ExitAction.Resume, XsetbvExit.Handle(v, in exit));
        bool gp = (v.Vmcs.Read(VmcsField.VmEntryInterruptionInformation) & 0x8000_00FF) == 0x8000_000D;
        Assert.Equal(!taken, gp);
        Assert.Equal(taken ? Rip + 3 : Rip, v.Vmcs.Read(VmcsField.GuestRip));
    }
}
