using VmmKit.Ept;

namespace VmmKit.Vmx;

/// <summary>
/// Programs VMCSs for the setups a hypervisor needs first: a PVH guest entering in 32-bit flat protected mode with
/// paging off (unrestricted guest + EPT; Xen's PVH boot ABI, docs/misc/pvh.pandoc), and a 64-bit long-mode guest.
/// Controls are adjusted against <see cref="VmxCapabilities"/>, CR0/CR4 to the fixed bits (SDM Appendix A.7–A.8),
/// and every guest-state field is set to satisfy the VM-entry checks of SDM Vol. 3C §27.3.1.
/// </summary>
public static class VmcsBuilder
{
    /// <summary>CR0.PE.</summary>
    public const ulong Cr0Pe = 1ul << 0;
    /// <summary>CR0.ET.</summary>
    public const ulong Cr0Et = 1ul << 4;
    /// <summary>CR0.NE.</summary>
    public const ulong Cr0Ne = 1ul << 5;
    /// <summary>CR0.WP.</summary>
    public const ulong Cr0Wp = 1ul << 16;
    /// <summary>CR0.PG.</summary>
    public const ulong Cr0Pg = 1ul << 31;
    /// <summary>CR4.PAE.</summary>
    public const ulong Cr4Pae = 1ul << 5;
    /// <summary>CR4.VMXE.</summary>
    public const ulong Cr4Vmxe = 1ul << 13;
    /// <summary>IA32_EFER.LME.</summary>
    public const ulong EferLme = 1ul << 8;
    /// <summary>IA32_EFER.LMA.</summary>
    public const ulong EferLma = 1ul << 10;
    /// <summary>The value of the VMCS link pointer when no shadow VMCS is used (SDM §25.4.2).</summary>
    public const ulong NoVmcsLink = ulong.MaxValue;
    /// <summary>The power-on IA32_PAT value.</summary>
    public const ulong DefaultPat = 0x0007_0406_0007_0406ul;

    /// <summary>
    /// Adjusts and writes the five control fields. <see cref="PrimaryProcessorBasedControls.ActivateSecondaryControls"/>
    /// is set when <paramref name="secondary"/> is non-empty; the "host address-space size" exit control already in the VMCS
    /// (from <see cref="SetHostState"/>) is kept, so the two may be called in either order. Throws
    /// <see cref="VmxCapabilityException"/> naming bits the processor cannot satisfy.
    /// </summary>
    public static void SetControls(Vmcs vmcs, VmxCapabilities capabilities, PinBasedControls pin, PrimaryProcessorBasedControls primary,
        SecondaryProcessorBasedControls secondary, VmExitControls exit, VmEntryControls entry)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        ArgumentNullException.ThrowIfNull(capabilities);
        if (secondary != SecondaryProcessorBasedControls.None)
            primary |= PrimaryProcessorBasedControls.ActivateSecondaryControls;
        exit |= (VmExitControls)vmcs.Read(VmcsField.VmExitControls) & VmExitControls.HostAddressSpaceSize;
        vmcs.Write(VmcsField.PinBasedVmExecutionControls, (uint)capabilities.Adjust(pin));
        vmcs.Write(VmcsField.PrimaryProcessorBasedVmExecutionControls, (uint)capabilities.Adjust(primary));
        vmcs.Write(VmcsField.SecondaryProcessorBasedVmExecutionControls, (uint)capabilities.Adjust(secondary));
        vmcs.Write(VmcsField.VmExitControls, (uint)capabilities.Adjust(exit));
        vmcs.Write(VmcsField.VmEntryControls, (uint)capabilities.Adjust(entry));
    }

    /// <summary>Writes the host-state area (SDM §25.5) and the "host address-space size" exit control from <paramref name="host"/>.</summary>
    public static void SetHostState(Vmcs vmcs, in VmcsHostState host)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        vmcs.Write(VmcsField.HostCr0, host.Cr0);
        vmcs.Write(VmcsField.HostCr3, host.Cr3);
        vmcs.Write(VmcsField.HostCr4, host.Cr4);
        vmcs.Write(VmcsField.HostCsSelector, host.CodeSelector);
        foreach (var f in (ReadOnlySpan<VmcsField>)[VmcsField.HostSsSelector, VmcsField.HostDsSelector, VmcsField.HostEsSelector, VmcsField.HostFsSelector, VmcsField.HostGsSelector])
            vmcs.Write(f, host.DataSelector);
        vmcs.Write(VmcsField.HostTrSelector, host.TaskSelector);
        vmcs.Write(VmcsField.HostTrBase, host.TrBase);
        vmcs.Write(VmcsField.HostGdtrBase, host.GdtrBase);
        vmcs.Write(VmcsField.HostIdtrBase, host.IdtrBase);
        vmcs.Write(VmcsField.HostFsBase, 0);
        vmcs.Write(VmcsField.HostGsBase, 0);
        vmcs.Write(VmcsField.HostRsp, host.Rsp);
        vmcs.Write(VmcsField.HostRip, host.Rip);
        ulong exit = vmcs.Read(VmcsField.VmExitControls);
        const ulong hostSize = (ulong)VmExitControls.HostAddressSpaceSize;
        vmcs.Write(VmcsField.VmExitControls, host.Is64Bit ? exit | hostSize : exit & ~hostSize);
    }

    /// <summary>
    /// Programs a PVH guest (Xen PVH boot ABI): 32-bit protected mode, paging off, CS/DS/ES/SS/FS/GS flat 4 GiB
    /// (selectors 0x10/0x18), TR a busy 32-bit TSS, LDTR unusable, RFLAGS = 0x2, CR0 = PE|ET (plus fixed bits), EIP =
    /// <paramref name="entryPoint"/>; guest-physical memory through <paramref name="eptPointer"/> with unrestricted guest.
    /// EBX (the hvm_start_info address) is left to the caller's <see cref="GuestRegisters"/>.
    /// <paramref name="primary"/>, <paramref name="secondary"/>, <paramref name="pin"/> add exiting controls (CPUID, VMCALL,
    /// triple fault and EPT violations always exit).
    /// </summary>
    public static void SetPvh32Guest(Vmcs vmcs, VmxCapabilities capabilities, EptPointer eptPointer, uint entryPoint,
        PrimaryProcessorBasedControls primary = PrimaryProcessorBasedControls.HltExiting | PrimaryProcessorBasedControls.UnconditionalIoExiting,
        SecondaryProcessorBasedControls secondary = SecondaryProcessorBasedControls.None,
        PinBasedControls pin = PinBasedControls.None)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        ArgumentNullException.ThrowIfNull(capabilities);
        // The guest's EFER and PAT travel through the VMCS (load on entry, save on exit) so that its WRMSRs and the
        // EFER.LMA it gains by enabling paging survive every exit (SDM Vol. 3C §28.3.2.1, §29.3.1); RDTSCP and INVPCID
        // are enabled when the processor supports them (without them they are #UD in the guest, SDM Vol. 3C §26.3).
        SetControls(vmcs, capabilities, pin, primary,
            secondary | SecondaryProcessorBasedControls.EnableEpt | SecondaryProcessorBasedControls.UnrestrictedGuest
                | Optional(capabilities, SecondaryProcessorBasedControls.EnableRdtscp | SecondaryProcessorBasedControls.EnableInvpcid),
            Optional(capabilities, VmExitControls.SaveIa32Efer | VmExitControls.SaveIa32Pat),
            Optional(capabilities, VmEntryControls.LoadIa32Efer | VmEntryControls.LoadIa32Pat));
        vmcs.Write(VmcsField.GuestIa32Efer, 0);
        vmcs.Write(VmcsField.EptPointer, eptPointer.Value);
        SetCommonGuestState(vmcs);

        ulong cr0 = capabilities.AdjustCr0(Cr0Pe | Cr0Et, unrestrictedGuest: true);
        ulong cr4 = capabilities.AdjustCr4(0);
        SetCrs(vmcs, cr0, Cr0Pe | Cr0Et, 0, cr4, 0);
        SetFlatSegments(vmcs, SegmentAccessRights.FlatCode32, SegmentAccessRights.FlatData, 0x10, 0x18);
        vmcs.Write(VmcsField.GuestRip, entryPoint);
        vmcs.Write(VmcsField.GuestRsp, 0);
    }

    /// <summary>
    /// Programs a 64-bit long-mode guest: CR0 = PE|ET|NE|WP|PG, CR4 = PAE (plus fixed bits), EFER = LME|LMA loaded on entry,
    /// "IA-32e mode guest", CS a 64-bit code segment (selector 0x08), data segments flat (0x10), guest page tables at
    /// guest-physical <paramref name="cr3"/>, memory through <paramref name="eptPointer"/>.
    /// </summary>
    public static void SetLongModeGuest(Vmcs vmcs, VmxCapabilities capabilities, EptPointer eptPointer, ulong cr3, ulong entryPoint, ulong stackPointer,
        PrimaryProcessorBasedControls primary = PrimaryProcessorBasedControls.HltExiting | PrimaryProcessorBasedControls.UnconditionalIoExiting,
        SecondaryProcessorBasedControls secondary = SecondaryProcessorBasedControls.None,
        PinBasedControls pin = PinBasedControls.None)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        ArgumentNullException.ThrowIfNull(capabilities);
        SetControls(vmcs, capabilities, pin, primary, secondary | SecondaryProcessorBasedControls.EnableEpt,
            VmExitControls.SaveIa32Efer, VmEntryControls.Ia32eModeGuest | VmEntryControls.LoadIa32Efer);
        vmcs.Write(VmcsField.EptPointer, eptPointer.Value);
        SetCommonGuestState(vmcs);

        ulong guestCr0 = Cr0Pe | Cr0Et | Cr0Ne | Cr0Wp | Cr0Pg;
        SetCrs(vmcs, capabilities.AdjustCr0(guestCr0), guestCr0, cr3, capabilities.AdjustCr4(Cr4Pae), Cr4Pae);
        vmcs.Write(VmcsField.GuestIa32Efer, EferLme | EferLma);
        SetFlatSegments(vmcs, SegmentAccessRights.Code64, SegmentAccessRights.FlatData, 0x08, 0x10);
        vmcs.Write(VmcsField.GuestRip, entryPoint);
        vmcs.Write(VmcsField.GuestRsp, stackPointer);
    }

    private static SecondaryProcessorBasedControls Optional(VmxCapabilities capabilities, SecondaryProcessorBasedControls wanted) =>
        wanted & (SecondaryProcessorBasedControls)capabilities.SecondaryProcessorBased.MayBeOne;

    private static VmExitControls Optional(VmxCapabilities capabilities, VmExitControls wanted) =>
        wanted & (VmExitControls)capabilities.VmExit.MayBeOne;

    private static VmEntryControls Optional(VmxCapabilities capabilities, VmEntryControls wanted) =>
        wanted & (VmEntryControls)capabilities.VmEntry.MayBeOne;

    private static void SetCrs(Vmcs vmcs, ulong cr0, ulong cr0Shadow, ulong cr3, ulong cr4, ulong cr4Shadow)
    {
        vmcs.Write(VmcsField.GuestCr0, cr0);
        vmcs.Write(VmcsField.GuestCr3, cr3);
        vmcs.Write(VmcsField.GuestCr4, cr4);
        // The guest owns every bit except those VMX forces; it reads its own view of them through the shadows.
        vmcs.Write(VmcsField.Cr0GuestHostMask, cr0 ^ cr0Shadow);
        vmcs.Write(VmcsField.Cr0ReadShadow, cr0Shadow);
        vmcs.Write(VmcsField.Cr4GuestHostMask, cr4 ^ cr4Shadow);
        vmcs.Write(VmcsField.Cr4ReadShadow, cr4Shadow);
    }

    private static void SetCommonGuestState(Vmcs vmcs)
    {
        vmcs.Write(VmcsField.VmcsLinkPointer, NoVmcsLink);
        vmcs.Write(VmcsField.GuestDr7, 0x400);
        vmcs.Write(VmcsField.GuestRflags, 0x2);
        vmcs.Write(VmcsField.GuestIa32Pat, DefaultPat);
        vmcs.Write(VmcsField.GuestIa32Debugctl, 0);
        vmcs.Write(VmcsField.GuestActivityState, 0);
        vmcs.Write(VmcsField.GuestInterruptibilityState, 0);
        vmcs.Write(VmcsField.GuestPendingDebugExceptions, 0);
        vmcs.Write(VmcsField.VmEntryInterruptionInformation, 0);
        vmcs.Write(VmcsField.GuestGdtrBase, 0);
        vmcs.Write(VmcsField.GuestGdtrLimit, 0);
        vmcs.Write(VmcsField.GuestIdtrBase, 0);
        vmcs.Write(VmcsField.GuestIdtrLimit, 0);
        vmcs.Write(VmcsField.GuestLdtrSelector, 0);
        vmcs.Write(VmcsField.GuestLdtrBase, 0);
        vmcs.Write(VmcsField.GuestLdtrLimit, 0);
        vmcs.Write(VmcsField.GuestLdtrAccessRights, SegmentAccessRights.Unusable.Value);
        vmcs.Write(VmcsField.GuestTrSelector, 0);
        vmcs.Write(VmcsField.GuestTrBase, 0);
        vmcs.Write(VmcsField.GuestTrLimit, 0x67);
        vmcs.Write(VmcsField.GuestTrAccessRights, SegmentAccessRights.BusyTss32.Value);
    }

    private static void SetFlatSegments(Vmcs vmcs, SegmentAccessRights code, SegmentAccessRights data, ushort codeSelector, ushort dataSelector)
    {
        for (int i = 0; i < 6; i++)
        {
            bool isCs = i == 1;
            vmcs.Write(VmcsField.GuestEsSelector + (uint)(2 * i), isCs ? codeSelector : dataSelector);
            vmcs.Write(VmcsField.GuestEsBase + (uint)(2 * i), 0);
            vmcs.Write(VmcsField.GuestEsLimit + (uint)(2 * i), 0xFFFF_FFFF);
            vmcs.Write(VmcsField.GuestEsAccessRights + (uint)(2 * i), isCs ? code.Value : data.Value);
        }
    }
}
