namespace VmmKit.Vmx;

/// <summary>
/// Processor state outside the VMCS that the VM-entry checks consult (SDM Vol. 3C §27.1–27.3): whether the host is in
/// IA-32e mode, the physical-address width, the current-VMCS and VMXON pointers, and optional access to physical memory
/// for the VMCS link pointer's revision identifier.
/// </summary>
public readonly record struct VmEntryEnvironment
{
    /// <summary>Creates an environment for a 64-bit host with a 39-bit physical-address width.</summary>
    public VmEntryEnvironment()
    {
    }

    /// <summary>True when the logical processor executing VMLAUNCH/VMRESUME is in IA-32e mode (§27.2.4).</summary>
    public bool HostInIa32eMode { get; init; } = true;

    /// <summary>MAXPHYADDR: physical addresses must fit in this many bits (CPUID.80000008H:EAX[7:0]).</summary>
    public int PhysicalAddressWidth { get; init; } = 39;

    /// <summary>The current-VMCS pointer (the VMCS link pointer may not equal it, §27.3.1.5).</summary>
    public ulong CurrentVmcsPointer { get; init; } = ulong.MaxValue;

    /// <summary>The VMXON pointer.</summary>
    public ulong VmxonPointer { get; init; } = ulong.MaxValue;

    /// <summary>True when the processor is in SMM (entry to SMM and SMI blocking are only valid there).</summary>
    public bool InSmm { get; init; }

    /// <summary>Reads the 32-bit revision identifier at a physical address; null skips the link-pointer revision check.</summary>
    public Func<ulong, uint>? ReadPhysical32 { get; init; }

    /// <summary>True when <paramref name="address"/> fits in <see cref="PhysicalAddressWidth"/> bits.</summary>
    public bool IsValidPhysicalAddress(ulong address) => PhysicalAddressWidth >= 64 || address >> PhysicalAddressWidth == 0;
}
