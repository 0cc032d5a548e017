using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// How a vCPU goes down and comes up, as Xen does for an HVM/PVH domain: every vCPU of the domain exists from its
/// creation, the secondary ones down and not initialised (Xen's <c>_VPF_down</c>, <c>is_initialised</c>); INIT resets
/// a vCPU and takes it down (xen/arch/x86/hvm/vlapic.c <c>vlapic_init_sipi_one</c>); a start-up IPI to a vCPU that
/// is not initialised starts it in real mode at CS:IP = (vector &lt;&lt; 8):0 (Xen's <c>hvm_vcpu_reset_state</c>; SDM
/// Vol. 3A §9.4.4); HLT with interrupts disabled takes it down, and when no vCPU is left up the domain powers off
/// (Xen's <c>hvm_vcpu_down</c>). A down vCPU is not scheduled; there is no wait-for-SIPI activity state in the VMCS,
/// as Xen keeps none: the hypervisor simply does not run it.
/// On the threaded scheduler the up/down bookkeeping is done under the domain's <see cref="Domain.SyncRoot"/>, and INIT
/// and start-up IPIs from another vCPU are posted to the target's own thread (<see cref="VcpuThread.Post"/>): they reset
/// its registers, which only its thread may touch while it can be in the guest; the queue keeps their order.
/// </summary>
internal static class VcpuLifecycle
{
    /// <summary>The VMCS encodings of ES..TR are consecutive by 2 in this order (SDM Vol. 3C Appendix B).</summary>
    private const int Es = 0, Cs = 1, Ss = 2, Ds = 3, Fs = 4, Gs = 5, Ldtr = 6, Tr = 7;

    /// <summary>
    /// Takes <paramref name="vcpu"/> down (Xen's <c>hvm_vcpu_down</c>): it stops being scheduled; a poll in progress ends.
    /// When no vCPU of the domain is left up, the domain powers off ("All CPUs offline -- powering off").
    /// </summary>
    public static void Down(VirtualCpu vcpu)
    {
        var domain = vcpu.Domain;
        bool anyUp = false;
        lock (domain.SyncRoot)
        {
            vcpu.IsUp = false;
            vcpu.IsBlocked = false;
            vcpu.Timers.Woken();
            foreach (var v in domain.Vcpus)
                anyUp |= v.IsUp;
        }

        vcpu.RequestSliceEnd();   // threaded scheduler: a vCPU running on its own thread leaves the guest
        if (anyUp)
            domain.UpdateBlockedState();
        else
            domain.Shutdown(ShutdownReason.Poweroff);
    }

    /// <summary>Brings a down, initialised vCPU up (VCPUOP_up, Xen's clear of <c>_VPF_down</c> then <c>vcpu_wake</c>).</summary>
    public static void Up(VirtualCpu vcpu)
    {
        lock (vcpu.Domain.SyncRoot)
        {
            if (vcpu.IsUp)
                return;
            vcpu.IsUp = true;
            vcpu.IsBlocked = false;
        }

        vcpu.Kick();
        vcpu.Domain.UpdateBlockedState();
    }

    /// <summary>
    /// INIT arrived (the local APIC already did its INIT reset): an initialised vCPU goes down and waits for a start-up
    /// IPI; a vCPU that is not initialised is already in that state, and nothing happens.
    /// </summary>
    public static void Init(VirtualCpu vcpu)
    {
        if (vcpu.Thread is { IsCurrent: false } thread)
        {
            thread.Post(static v => Init(v));
            return;
        }

        if (!vcpu.IsInitialised)
            return;
        vcpu.IsInitialised = false;
        Down(vcpu);
    }

    /// <summary>
    /// A start-up IPI with <paramref name="vector"/> arrived: a vCPU waiting for one starts in real mode at physical
    /// address vector &lt;&lt; 12; any other vCPU ignores it (SDM Vol. 3A §9.4.4: a SIPI is taken only in wait-for-SIPI).
    /// Returns true when the vCPU started (on the threaded scheduler, from another thread: when the IPI was posted to it).
    /// </summary>
    public static bool Startup(VirtualCpu vcpu, byte vector)
    {
        if (vcpu.Thread is { IsCurrent: false } thread)
        {
            thread.Post(v => Startup(v, vector));
            return true;
        }

        if (vcpu.IsInitialised || vcpu.Domain.State is DomainState.Shutdown or DomainState.Crashed)
            return false;
        LoadRealMode(vcpu, (ushort)(vector << 8), 0);
        vcpu.IsInitialised = true;
        Up(vcpu);
        return true;
    }

    /// <summary>
    /// The state after INIT and a start-up IPI (Xen's <c>hvm_vcpu_reset_state</c>, SDM Vol. 3A Table 9-1): real mode,
    /// CR0 = ET, CS = <paramref name="cs"/> with base cs &lt;&lt; 4, the other segments 0 with 64 KiB limits, IP =
    /// <paramref name="ip"/>, RFLAGS = 2, general registers 0. The VMCS keeps its controls and TSC offset; with
    /// unrestricted guest the processor runs real mode directly (SDM Vol. 3C §26.8).
    /// </summary>
    public static void LoadRealMode(VirtualCpu vcpu, ushort cs, ushort ip)
    {
        var vmcs = vcpu.Vmcs;
        var caps = vcpu.Domain.Machine.Capabilities;
        SetCrs(vcpu, caps.AdjustCr0(VmcsBuilder.Cr0Et, unrestrictedGuest: true), VmcsBuilder.Cr0Et, 0, 0, efer: 0);
        Segment(vmcs, Cs, cs, (ulong)cs << 4, 0xFFFF, 0x9B);
        foreach (int s in (ReadOnlySpan<int>)[Es, Ss, Ds, Fs, Gs])
            Segment(vmcs, s, 0, 0, 0xFFFF, 0x93);
        Segment(vmcs, Ldtr, 0, 0, 0xFFFF, 0x82);
        Segment(vmcs, Tr, 0, 0, 0xFFFF, 0x8B);
        ResetCommon(vcpu, ip, 0, 0x2);
    }

    /// <summary>
    /// Writes CR0/CR3/CR4 and EFER, with the read shadows holding the guest's values and the host owning the bits VMX
    /// forces and the CR4 bits the guest may not set (<see cref="GuestControlRegisters.SetHostMasks"/>), and "IA-32e mode
    /// guest" following EFER.LMA (SDM Vol. 3C §26.2.1.3).
    /// </summary>
    public static void SetCrs(VirtualCpu vcpu, ulong cr0, ulong cr0Shadow, ulong cr3, ulong cr4Shadow, ulong efer)
    {
        var vmcs = vcpu.Vmcs;
        ulong cr4 = vcpu.Domain.Machine.Capabilities.AdjustCr4(cr4Shadow);
        vmcs.Write(VmcsField.GuestCr0, cr0);
        vmcs.Write(VmcsField.Cr0ReadShadow, cr0Shadow);
        vmcs.Write(VmcsField.GuestCr3, cr3);
        vmcs.Write(VmcsField.GuestCr4, cr4);
        vmcs.Write(VmcsField.Cr4ReadShadow, cr4Shadow);
        GuestControlRegisters.SetHostMasks(vmcs, vcpu.Domain.Machine.Capabilities);
        vmcs.Write(VmcsField.GuestIa32Efer, efer);
        ulong entry = vmcs.Read(VmcsField.VmEntryControls);
        vmcs.Write(VmcsField.VmEntryControls, (efer & VmcsBuilder.EferLma) != 0
            ? entry | (uint)VmEntryControls.Ia32eModeGuest
            : entry & ~(ulong)(uint)VmEntryControls.Ia32eModeGuest);
    }

    /// <summary>Writes segment register <paramref name="index"/> (ES, CS, SS, DS, FS, GS, LDTR, TR) in VMX access-rights format.</summary>
    public static void Segment(Vmcs vmcs, int index, ushort selector, ulong baseAddress, uint limit, uint accessRights)
    {
        uint step = (uint)(2 * index);
        vmcs.Write(VmcsField.GuestEsSelector + step, selector);
        vmcs.Write(VmcsField.GuestEsBase + step, baseAddress);
        vmcs.Write(VmcsField.GuestEsLimit + step, limit);
        vmcs.Write(VmcsField.GuestEsAccessRights + step, accessRights);
    }

    /// <summary>The rest of a fresh start: RIP, RSP, RFLAGS, empty descriptor tables, no pending event, registers 0.</summary>
    public static void ResetCommon(VirtualCpu vcpu, ulong rip, ulong rsp, ulong rflags)
    {
        var vmcs = vcpu.Vmcs;
        vmcs.Write(VmcsField.GuestGdtrBase, 0);
        vmcs.Write(VmcsField.GuestGdtrLimit, 0xFFFF);
        vmcs.Write(VmcsField.GuestIdtrBase, 0);
        vmcs.Write(VmcsField.GuestIdtrLimit, 0xFFFF);
        vmcs.Write(VmcsField.GuestRip, rip);
        vmcs.Write(VmcsField.GuestRsp, rsp);
        vmcs.Write(VmcsField.GuestRflags, rflags | 0x2);
        vmcs.Write(VmcsField.GuestDr7, 0x400);
        vmcs.Write(VmcsField.GuestActivityState, 0);
        vmcs.Write(VmcsField.GuestInterruptibilityState, 0);
        vmcs.Write(VmcsField.GuestPendingDebugExceptions, 0);
        vmcs.Write(VmcsField.VmEntryInterruptionInformation, 0);
        vcpu.Registers = default;
    }
}
