using VmmKit.Dom0.Xen.Abi;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// XEN_DOMCTL_setvcpucontext and XEN_DOMCTL_getvcpucontext for an HVM/PVH domain (xen/common/domctl.c; x86's
/// <c>arch_set_info_guest</c> and <c>arch_get_info_guest</c> in xen/arch/x86/domain.c), with the x86-64
/// <c>struct vcpu_guest_context</c>. For an HVM vCPU Xen's set takes <c>user_regs</c>' general registers, RIP, RSP
/// and RFLAGS, DR7 (<c>hvm_set_info_guest</c>) and VGCF_online; the control registers, selectors and segment bases stay
/// as they are (an HVM vCPU's are loaded by sethvmcontext or VCPUOP_initialise). Get reports all of them.
/// </summary>
internal static class VcpuContextDomctl
{
    /// <summary>Architectural RFLAGS bits a context may set (SDM Vol. 1 §3.4.3), without VM: bit 1 is always 1.</summary>
    private const ulong RflagsAllowed = 0x3D_7FD5;

    /// <summary>CS.L in VMX access rights (SDM Vol. 3C §25.4.1).</summary>
    private const ulong CsLong = 1ul << 13;

    /// <summary>
    /// XEN_DOMCTL_setvcpucontext: -EINVAL for the caller's own domain (Xen cannot pause it) or a vCPU id at or above
    /// max_vcpus; a NULL <c>ctxt</c> resets the vCPU (Xen's <c>vcpu_reset</c>: down, not initialised); an unreadable
    /// context is -EFAULT. A vCPU that is not initialised first gets the PVH entry state (32-bit protected mode, flat
    /// segments, paging off: hvm_start_info's contract, xen/include/public/arch-x86/hvm/start_info.h), then the context's
    /// registers; VGCF_online brings it up, its absence takes it down. RIP and RSP above 4 GiB outside 64-bit code are
    /// -EINVAL (VM entry would fail: SDM Vol. 3C §27.3.1.4), where Xen would crash the domain at its next entry.
    /// Xen pauses the domain around the change; the toolstack keeps it paused here, as while it builds it.
    /// </summary>
    public static long Set(ref HypercallCall<VirtualCpu> call, Domain caller, Domain target, in XenDomctl op)
    {
        if (target == caller || op.VcpuContextVcpu >= target.MaxVcpus)
            return XenErrno.EINVAL.Negated();
        VcpuGuestContext c = default;
        if (op.VcpuContextCtxt != 0 && !call.TryCopyFromGuest(op.VcpuContextCtxt, out c))
            return XenErrno.EFAULT.Negated();
        long rc = EnsureVcpus(target);
        if (rc != 0)
            return rc;
        var vcpu = target.Vcpus[(int)op.VcpuContextVcpu];
        if (op.VcpuContextCtxt == 0)
        {
            vcpu.IsInitialised = false;
            TakeDown(vcpu);
            return 0;
        }

        var vmcs = vcpu.Vmcs;
        bool longCode = vcpu.IsInitialised && (vmcs.Read(VmcsField.GuestCsAccessRights) & CsLong) != 0;
        ref readonly var r = ref c.UserRegs;
        if (!longCode && (r.Rip | r.Rsp) > uint.MaxValue)
            return XenErrno.EINVAL.Negated();
        if (!vcpu.IsInitialised)
        {
            rc = VcpuHvmContextLoader.Load(vcpu, PvhEntryState);
            if (rc != 0)
                return rc;

            // The selectors and flat FS/GS of this hypervisor's PVH start (VmcsBuilder.SetPvh32Guest: CS 0x10, data 0x18), so
            // that a guest taking an interrupt before it loads its own GDT pushes and returns to a usable CS.
            for (int segment = 0; segment < 6; segment++)
                VcpuLifecycle.Segment(vmcs, segment, segment == 1 ? (ushort)0x10 : (ushort)0x18, 0, 0xFFFF_FFFF, segment == 1 ? 0xC09Bu : 0xC093u);
        }

        ref var g = ref vcpu.Registers;
        (g.Rax, g.Rcx, g.Rdx, g.Rbx, g.Rbp, g.Rsi, g.Rdi) = (r.Rax, r.Rcx, r.Rdx, r.Rbx, r.Rbp, r.Rsi, r.Rdi);
        (g.R8, g.R9, g.R10, g.R11, g.R12, g.R13, g.R14, g.R15) = (r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15);
        vmcs.Write(VmcsField.GuestRip, r.Rip);
        vmcs.Write(VmcsField.GuestRsp, r.Rsp);
        vmcs.Write(VmcsField.GuestRflags, (r.Rflags & RflagsAllowed) | 2);   // Xen: user_regs.eflags |= 2
        unsafe
        {
            // Bits 63:32, 15:14, 12 and 11 reserved, bit 10 set (SDM Vol. 3B §18.2.4).
            vmcs.Write(VmcsField.GuestDr7, (c.DebugReg[7] & 0xFFFF_23FF) | 0x400);
        }

        // vmx_set_info_guest: no STI/MOV SS blocking left that a new RFLAGS.TF would make VM entry fail on.
        vmcs.Write(VmcsField.GuestInterruptibilityState, vmcs.Read(VmcsField.GuestInterruptibilityState) & ~3ul);
        vcpu.IsInitialised = true;
        if ((c.Flags & ToolsAbi.VgcfOnline) != 0)
            VcpuLifecycle.Up(vcpu);
        else
            TakeDown(vcpu);
        return 0;
    }

    /// <summary>Xen's <c>set_bit(_VPF_down)</c>: the vCPU is not scheduled; unlike a guest's HLT, the domain stays as it is.</summary>
    private static void TakeDown(VirtualCpu vcpu)
    {
        vcpu.IsUp = false;
        vcpu.IsBlocked = false;
        vcpu.Domain.UpdateBlockedState();
    }

    /// <summary>
    /// XEN_DOMCTL_getvcpucontext: -EINVAL for a vCPU id at or above max_vcpus or the calling vCPU itself; -ENODATA for a
    /// vCPU that is not initialised; -EFAULT when <c>ctxt</c> cannot be written. flags has VGCF_online when the vCPU is
    /// up; user_regs, CR0/CR3/CR4, DR7, fs_base and the GS base (kernel or user by CS.RPL, as Xen) come from the vCPU.
    /// The FXSAVE image, CR2, DR0-3, DR6 and the shadow GS base are not kept per vCPU here: 0 (DR6 its reset value), and
    /// flags has no VGCF_i387_valid.
    /// </summary>
    public static long Get(ref HypercallCall<VirtualCpu> call, Domain target, in XenDomctl op)
    {
        if (op.VcpuContextVcpu >= target.MaxVcpus || (target == call.Caller.Domain && op.VcpuContextVcpu == (uint)call.Caller.Id))
            return XenErrno.EINVAL.Negated();
        if (op.VcpuContextVcpu >= (uint)target.Vcpus.Count || !target.Vcpus[(int)op.VcpuContextVcpu].IsInitialised)
            return XenErrno.ENODATA.Negated();
        var c = Read(target.Vcpus[(int)op.VcpuContextVcpu]);
        return call.TryCopyToGuest(op.VcpuContextCtxt, in c) ? 0 : XenErrno.EFAULT.Negated();
    }

    /// <summary>One vCPU's context as <c>arch_get_info_guest</c> fills it for an HVM vCPU.</summary>
    internal static VcpuGuestContext Read(VirtualCpu vcpu)
    {
        var vmcs = vcpu.Vmcs;
        ref readonly var g = ref vcpu.Registers;
        var c = new VcpuGuestContext { Flags = vcpu.IsUp ? ToolsAbi.VgcfOnline : 0 };
        c.UserRegs = new CpuUserRegs
        {
            Rax = g.Rax, Rcx = g.Rcx, Rdx = g.Rdx, Rbx = g.Rbx, Rbp = g.Rbp, Rsi = g.Rsi, Rdi = g.Rdi,
            R8 = g.R8, R9 = g.R9, R10 = g.R10, R11 = g.R11, R12 = g.R12, R13 = g.R13, R14 = g.R14, R15 = g.R15,
            Rip = vmcs.Read(VmcsField.GuestRip), Rsp = vmcs.Read(VmcsField.GuestRsp), Rflags = vmcs.Read(VmcsField.GuestRflags),
            Cs = (ushort)vmcs.Read(VmcsField.GuestCsSelector), Ss = (ushort)vmcs.Read(VmcsField.GuestSsSelector),
            Ds = (ushort)vmcs.Read(VmcsField.GuestDsSelector), Es = (ushort)vmcs.Read(VmcsField.GuestEsSelector),
            Fs = (ushort)vmcs.Read(VmcsField.GuestFsSelector), Gs = (ushort)vmcs.Read(VmcsField.GuestGsSelector),
        };
        unsafe
        {
            // The guest's view (Xen's guest_cr[]): the bits it owns from the register, the host's from the read shadow.
            c.CtrlReg[0] = GuestControlRegisters.Read(vmcs, 0);
            c.CtrlReg[3] = vmcs.Read(VmcsField.GuestCr3);
            c.CtrlReg[4] = GuestControlRegisters.Read(vmcs, 4);
            c.DebugReg[6] = 0xFFFF_0FF0;
            c.DebugReg[7] = vmcs.Read(VmcsField.GuestDr7);
        }

        c.FsBase = vmcs.Read(VmcsField.GuestFsBase);
        ulong gsBase = vmcs.Read(VmcsField.GuestGsBase);
        if ((c.UserRegs.Cs & 3) == 0)
            c.GsBaseKernel = gsBase;
        else
            c.GsBaseUser = gsBase;
        return c;
    }

    /// <summary>The PVH entry state (libxc's <c>vcpu_hvm</c> for a PVH guest): CR0 = PE | ET, flat 32-bit segments.</summary>
    private static VcpuHvmContext PvhEntryState => new()
    {
        Mode = VcpuHvmContext.Mode32,
        X86_32 = new VcpuHvmX86_32
        {
            Eflags = 2, Cr0 = 0x11, CsLimit = 0xF_FFFF, DsLimit = 0xF_FFFF, SsLimit = 0xF_FFFF, EsLimit = 0xF_FFFF, TrLimit = 0x67,
            CsAr = 0xC9B, DsAr = 0xC93, SsAr = 0xC93, EsAr = 0xC93, TrAr = 0x8B,
        },
    };

    /// <summary>A domain the toolstack created has its vCPUs from the first context it gets (vCPU 0 first, as Xen's createdomain).</summary>
    internal static long EnsureVcpus(Domain target)
    {
        if (target.Vcpus.Count != 0)
            return 0;
        long rc = target.InitialiseBootVcpu(0, 0);
        if (rc != 0)
            return rc;
        var boot = target.Vcpus[0];
        boot.IsUp = false;
        boot.IsInitialised = false;
        target.UpdateBlockedState();
        return 0;
    }
}
