using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

public unsafe class RegisterAbiTests
{
    private static long Echo(ref HypercallCall<TestVcpu> call)
    {
        var args = new string[6];
        for (int i = 0; i < 6; i++)
            args[i] = call.Argument(i).ToString("x");
        call.Caller.Log.Add($"{call.Abi} op={call.Op} " + string.Join(",", args));
        return -2; // -ENOENT-like, to see sign handling
    }

    private static HypercallDispatcher<TestVcpu> EchoDispatcher()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.Register(HypercallNumber.XenVersion, &Echo);
        return d;
    }

    [Fact]
    public void Long_mode_reads_rdi_rsi_rdx_r10_r8_r9_and_returns_in_rax()
    {
        var vcpu = new TestVcpu(1);
        var regs = new HypercallRegisters
        {
            Rax = 17, Rdi = 0x1111_0000_0000_0001, Rsi = 2, Rdx = 3, R10 = 4, R8 = 5, R9 = 6,
            Rbx = 0xbb, Rcx = 0xcc, Rbp = 0xdd,
        };
        var disposition = EchoDispatcher().Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16));
        Assert.Equal(HypercallDisposition.Completed, disposition);
        Assert.Equal("Native64 op=17 1111000000000001,2,3,4,5,6", Assert.Single(vcpu.Log));
        Assert.Equal(unchecked((ulong)-2L), regs.Rax);
        Assert.Equal(0x1111_0000_0000_0001UL, regs.Rdi); // arguments are not clobbered
    }

    [Theory]
    [InlineData(GuestX86Mode.Protected32)]
    [InlineData(GuestX86Mode.Protected16)]
    [InlineData(GuestX86Mode.Real)]
    public void Other_modes_read_ebx_ecx_edx_esi_edi_ebp_and_return_in_eax(GuestX86Mode mode)
    {
        var vcpu = new TestVcpu(1);
        var regs = new HypercallRegisters
        {
            Rax = 0xdead_beef_0000_0011, Rbx = 0xffff_ffff_0000_0001, Rcx = 2, Rdx = 3, Rsi = 4, Rdi = 5, Rbp = 6,
            R8 = 0x88, R10 = 0xaa,
        };
        EchoDispatcher().Dispatch(vcpu, ref regs, mode, 0, new FlatGuestMemory(0, 16));
        Assert.Equal("Compat32 op=17 1,2,3,4,5,6", Assert.Single(vcpu.Log));
        // regs->eax = ret: only the low half changes.
        Assert.Equal(0xdead_beef_ffff_fffeUL, regs.Rax);
    }

    [Fact]
    public void Long_mode_with_a_number_above_32_bits_is_enosys()
    {
        var vcpu = new TestVcpu(1);
        var regs = new HypercallRegisters { Rax = (1UL << 32) | 17 };
        EchoDispatcher().Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16));
        Assert.Empty(vcpu.Log);
        Assert.Equal(unchecked((ulong)-38L), regs.Rax);
    }

    [Theory]
    [InlineData(GuestX86Mode.Long64, 3)]
    [InlineData(GuestX86Mode.Protected32, 1)]
    [InlineData(GuestX86Mode.Protected16, 3)]
    [InlineData(GuestX86Mode.Virtual8086, 0)]
    [InlineData(GuestX86Mode.Virtual8086, 3)]
    public void Callers_outside_ring0_or_in_vm86_get_eperm(GuestX86Mode mode, int cpl)
    {
        var vcpu = new TestVcpu(1);
        var regs = new HypercallRegisters { Rax = 17 };
        var disposition = EchoDispatcher().Dispatch(vcpu, ref regs, mode, cpl, new FlatGuestMemory(0, 16));
        Assert.Equal(HypercallDisposition.Completed, disposition);
        Assert.Empty(vcpu.Log);
        Assert.Equal(unchecked((ulong)-1L), regs.Rax);
    }

    [Fact]
    public void Real_mode_ignores_cpl()
    {
        var vcpu = new TestVcpu(1);
        var regs = new HypercallRegisters { Rax = 17 };
        EchoDispatcher().Dispatch(vcpu, ref regs, GuestX86Mode.Real, 3, new FlatGuestMemory(0, 16));
        Assert.Single(vcpu.Log);
    }

    [Theory]
    // cr0, rflags, efer, cs access rights -> mode (vmx_guest_x86_mode)
    [InlineData(0x10UL, 0x2UL, 0UL, 0x409bu, GuestX86Mode.Real)]
    [InlineData(0x11UL, 0x20002UL, 0UL, 0xc09bu, GuestX86Mode.Virtual8086)]
    [InlineData(0x11UL, 0x2UL, 0UL, 0x009bu, GuestX86Mode.Protected16)]
    [InlineData(0x11UL, 0x2UL, 0UL, 0xc09bu, GuestX86Mode.Protected32)]
    [InlineData(0x80000011UL, 0x2UL, 0x500UL, 0xc09bu, GuestX86Mode.Protected32)] // compatibility mode: LMA, CS.L = 0
    [InlineData(0x80000011UL, 0x2UL, 0x500UL, 0xa09bu, GuestX86Mode.Long64)]
    [InlineData(0x80000011UL, 0x2UL, 0x100UL, 0xa09bu, GuestX86Mode.Protected16)] // LME without LMA: CS.L ignored, D = 0
    public void Mode_is_decoded_as_xen_does(ulong cr0, ulong rflags, ulong efer, uint csAr, GuestX86Mode expected)
    {
        Assert.Equal(expected, GuestX86ModeDecoder.Decode(cr0, rflags, efer, csAr));
        Assert.Equal(expected == GuestX86Mode.Long64 ? HypercallAbi.Native64 : HypercallAbi.Compat32, HypercallAbiExtensions.ForMode(expected));
    }
}
