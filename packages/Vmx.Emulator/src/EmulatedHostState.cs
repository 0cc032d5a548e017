namespace VmmKit.Vmx.Emulator;

/// <summary>
/// A host-state area (SDM Vol. 3C §25.5) for <see cref="EmulatedProcessor"/>. The emulated processor runs no host
/// code — a VM exit returns from <see cref="EmulatedProcessor.Run"/> — but VMLAUNCH/VMRESUME check the host state
/// like hardware (SDM Vol. 3C §27.2.2–§27.2.4), so a VMCS needs a consistent one: <see cref="Default"/> describes a
/// 64-bit host with paging and the fixed CR0/CR4 bits of <see cref="EmulatedCapabilities"/>, canonical bases and valid
/// selectors. Pass it to <see cref="VmcsBuilder.SetHostState"/>.
/// </summary>
public static class EmulatedHostState
{
    private const ulong Cr0Pe = 1, Cr0Et = 1ul << 4, Cr0Ne = 1ul << 5, Cr0Wp = 1ul << 16, Cr0Pg = 1ul << 31;
    private const ulong Cr4Pae = 1ul << 5;

    /// <summary>
    /// A 64-bit host: CR0 = PE|ET|NE|WP|PG and CR4 = PAE adjusted to the emulator's fixed bits (CR4.VMXE), CR3 0x1000,
    /// CS 0x08, SS/DS/ES/FS/GS 0x10, TR 0x18, GDT/IDT/TSS and RSP/RIP in the upper canonical half.
    /// </summary>
    public static VmcsHostState Default { get; } = Create();

    private static VmcsHostState Create()
    {
        var caps = EmulatedCapabilities.Create();
        return new VmcsHostState
        {
            Cr0 = caps.AdjustCr0(Cr0Pe | Cr0Et | Cr0Ne | Cr0Wp | Cr0Pg),
            Cr3 = 0x1000,
            Cr4 = caps.AdjustCr4(Cr4Pae),
            CodeSelector = 0x08,
            DataSelector = 0x10,
            TaskSelector = 0x18,
            GdtrBase = 0xFFFF_8000_0000_1000,
            TrBase = 0xFFFF_8000_0000_2000,
            IdtrBase = 0xFFFF_8000_0000_3000,
            Rsp = 0xFFFF_8000_0001_0000,
            Rip = 0xFFFF_8000_0002_0000,
            Is64Bit = true,
        };
    }
}
