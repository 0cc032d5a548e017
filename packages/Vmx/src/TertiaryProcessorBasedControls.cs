namespace VmmKit.Vmx;

/// <summary>Tertiary processor-based VM-execution controls (64-bit VMCS field 0x2034; SDM Vol. 3C §25.6.2, Table 25-8).</summary>
[Flags]
public enum TertiaryProcessorBasedControls : ulong
{
    /// <summary>No control set.</summary>
    None = 0,
    /// <summary>Bit 0: LOADIWKEY causes a VM exit.</summary>
    LoadiwkeyExiting = 1ul << 0,
    /// <summary>Bit 1: hypervisor-managed linear-address translation is enabled.</summary>
    EnableHlat = 1ul << 1,
    /// <summary>Bit 2: EPT paging-write control.</summary>
    EptPagingWriteControl = 1ul << 2,
    /// <summary>Bit 3: guest-paging verification.</summary>
    GuestPagingVerification = 1ul << 3,
    /// <summary>Bit 4: IPI virtualization.</summary>
    IpiVirtualization = 1ul << 4,
    /// <summary>Bit 7: virtualize IA32_SPEC_CTRL.</summary>
    VirtualizeIa32SpecCtrl = 1ul << 7,
}
