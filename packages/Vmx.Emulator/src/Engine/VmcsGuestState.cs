namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Moves the guest-state area of a VMCS (SDM Vol. 3C §25.4) in and out of <see cref="CpuState"/>.</summary>
internal static unsafe class VmcsGuestState
{
    private const ulong EferLme = 1UL << 8, EferLma = 1UL << 10;

    /// <summary>VM entry: loads the guest state (SDM Vol. 3C §28.3.2).</summary>
    public static void Load(Core core, Vmcs vmcs, ref GuestRegisters regs)
    {
        ref CpuState s = ref core.S;
        for (int k = 0; k < 16; k++)
        {
            if (k != 4) s.Gpr[k] = regs[k];
        }
        s.Gpr[4] = vmcs.Read(VmcsField.GuestRsp);
        s.Rip = vmcs.Read(VmcsField.GuestRip);
        s.SetRflags(vmcs.Read(VmcsField.GuestRflags));
        s.Cr0 = vmcs.Read(VmcsField.GuestCr0);
        s.Cr3 = vmcs.Read(VmcsField.GuestCr3);
        s.Cr4 = vmcs.Read(VmcsField.GuestCr4);
        s.Dr7 = vmcs.Read(VmcsField.GuestDr7);
        core.RefreshBreakpoints();
        core.PendingDebugExceptions = vmcs.Read(VmcsField.GuestPendingDebugExceptions) & 0x400F; // B0-B3, BS (SDM Vol. 3C §25.4.2)
        var entry = (VmEntryControls)vmcs.Read(VmcsField.VmEntryControls);
        bool ia32e = (entry & VmEntryControls.Ia32eModeGuest) != 0;
        // SDM Vol. 3C §28.3.2.1 (loading guest control registers and MSRs): with "load IA32_EFER" the whole register
        // comes from the guest-state field (the entry checks make its LMA equal "IA-32e mode guest"); without it,
        // LMA and LME are loaded from "IA-32e mode guest" and the other bits keep their value.
        ulong efer;
        if ((entry & VmEntryControls.LoadIa32Efer) != 0)
        {
            efer = vmcs.Read(VmcsField.GuestIa32Efer);
            efer = ia32e ? efer | EferLma : efer & ~EferLma;
        }
        else
        {
            efer = ia32e ? s.Efer | EferLma | EferLme : s.Efer & ~(EferLma | EferLme);
        }
        s.Efer = efer;
        if ((entry & VmEntryControls.LoadIa32Pat) != 0) s.Pat = vmcs.Read(VmcsField.GuestIa32Pat);
        s.SysenterCs = (uint)vmcs.Read(VmcsField.GuestIa32SysenterCs);
        s.SysenterEsp = vmcs.Read(VmcsField.GuestIa32SysenterEsp);
        s.SysenterEip = vmcs.Read(VmcsField.GuestIa32SysenterEip);
        for (int k = 0; k < 8; k++)
        {
            ref SegmentRegister seg = ref (k < 6 ? ref s.Segment(k) : ref (k == 6 ? ref s.Ldtr : ref s.Tr));
            VmcsField sel = k < 6 ? VmcsField.GuestEsSelector + (uint)(2 * k) : k == 6 ? VmcsField.GuestLdtrSelector : VmcsField.GuestTrSelector;
            VmcsField bas = k < 6 ? VmcsField.GuestEsBase + (uint)(2 * k) : k == 6 ? VmcsField.GuestLdtrBase : VmcsField.GuestTrBase;
            VmcsField lim = k < 6 ? VmcsField.GuestEsLimit + (uint)(2 * k) : k == 6 ? VmcsField.GuestLdtrLimit : VmcsField.GuestTrLimit;
            VmcsField ar = k < 6 ? VmcsField.GuestEsAccessRights + (uint)(2 * k) : k == 6 ? VmcsField.GuestLdtrAccessRights : VmcsField.GuestTrAccessRights;
            seg.Selector = (ushort)vmcs.Read(sel);
            seg.Base = vmcs.Read(bas);
            seg.Limit = (uint)vmcs.Read(lim);
            seg.AccessRights = (uint)vmcs.Read(ar);
        }
        s.GdtrBase = vmcs.Read(VmcsField.GuestGdtrBase);
        s.GdtrLimit = (uint)vmcs.Read(VmcsField.GuestGdtrLimit);
        s.IdtrBase = vmcs.Read(VmcsField.GuestIdtrBase);
        s.IdtrLimit = (uint)vmcs.Read(VmcsField.GuestIdtrLimit);
        core.RefreshDerivedMode(); // the caller invalidates the linear mappings (SDM Vol. 3C §28.3.3.1)
    }

    /// <summary>VM exit: saves the guest state (SDM Vol. 3C §29.3).</summary>
    public static void Store(Core core, Vmcs vmcs)
    {
        ref CpuState s = ref core.S;
        vmcs.Write(VmcsField.GuestRsp, s.Gpr[4]);
        vmcs.Write(VmcsField.GuestRip, s.Rip);
        vmcs.Write(VmcsField.GuestRflags, s.GetRflags());
        vmcs.Write(VmcsField.GuestCr0, s.Cr0);
        vmcs.Write(VmcsField.GuestCr3, s.Cr3);
        vmcs.Write(VmcsField.GuestCr4, s.Cr4);
        vmcs.Write(VmcsField.GuestDr7, s.Dr7);
        vmcs.Write(VmcsField.GuestPendingDebugExceptions, core.PendingDebugExceptions);
        var exitControls = (VmExitControls)vmcs.Read(VmcsField.VmExitControls);
        if ((exitControls & VmExitControls.SaveIa32Efer) != 0) vmcs.Write(VmcsField.GuestIa32Efer, s.Efer);
        if ((exitControls & VmExitControls.SaveIa32Pat) != 0) vmcs.Write(VmcsField.GuestIa32Pat, s.Pat);
        vmcs.Write(VmcsField.GuestIa32SysenterCs, s.SysenterCs);
        vmcs.Write(VmcsField.GuestIa32SysenterEsp, s.SysenterEsp);
        vmcs.Write(VmcsField.GuestIa32SysenterEip, s.SysenterEip);
        // SDM Vol. 3C §29.3.1 (saving control registers): every VM exit stores EFER.LMA into "IA-32e mode guest".
        ulong entry = vmcs.Read(VmcsField.VmEntryControls);
        const ulong ia32e = (ulong)VmEntryControls.Ia32eModeGuest;
        vmcs.Write(VmcsField.VmEntryControls, (s.Efer & EferLma) != 0 ? entry | ia32e : entry & ~ia32e);
        for (int k = 0; k < 8; k++)
        {
            ref SegmentRegister seg = ref (k < 6 ? ref s.Segment(k) : ref (k == 6 ? ref s.Ldtr : ref s.Tr));
            VmcsField sel = k < 6 ? VmcsField.GuestEsSelector + (uint)(2 * k) : k == 6 ? VmcsField.GuestLdtrSelector : VmcsField.GuestTrSelector;
            VmcsField bas = k < 6 ? VmcsField.GuestEsBase + (uint)(2 * k) : k == 6 ? VmcsField.GuestLdtrBase : VmcsField.GuestTrBase;
            VmcsField lim = k < 6 ? VmcsField.GuestEsLimit + (uint)(2 * k) : k == 6 ? VmcsField.GuestLdtrLimit : VmcsField.GuestTrLimit;
            VmcsField ar = k < 6 ? VmcsField.GuestEsAccessRights + (uint)(2 * k) : k == 6 ? VmcsField.GuestLdtrAccessRights : VmcsField.GuestTrAccessRights;
            vmcs.Write(sel, seg.Selector);
            vmcs.Write(bas, seg.Base);
            vmcs.Write(lim, seg.Limit);
            vmcs.Write(ar, seg.AccessRights);
        }
        vmcs.Write(VmcsField.GuestGdtrBase, s.GdtrBase);
        vmcs.Write(VmcsField.GuestGdtrLimit, s.GdtrLimit);
        vmcs.Write(VmcsField.GuestIdtrBase, s.IdtrBase);
        vmcs.Write(VmcsField.GuestIdtrLimit, s.IdtrLimit);
    }

    /// <summary>Copies the general registers (except RSP, which lives in the VMCS) out to <paramref name="regs"/>.</summary>
    public static void SaveRegisters(Core core, ref GuestRegisters regs)
    {
        ref CpuState s = ref core.S;
        for (int k = 0; k < 16; k++)
        {
            if (k != 4) regs[k] = s.Gpr[k];
        }
    }
}
