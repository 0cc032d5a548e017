namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Bits of CR0, CR4 and IA32_EFER (SDM Vol. 3A §2.5 "Control Registers", §2.2.1 "Extended Feature Enable Register").</summary>
internal static class ControlBits
{
    public const ulong Cr0Pe = 1UL << 0, Cr0Mp = 1UL << 1, Cr0Em = 1UL << 2, Cr0Ts = 1UL << 3, Cr0Et = 1UL << 4, Cr0Ne = 1UL << 5;
    public const ulong Cr0Wp = 1UL << 16, Cr0Am = 1UL << 18, Cr0Nw = 1UL << 29, Cr0Cd = 1UL << 30, Cr0Pg = 1UL << 31;
    /// <summary>CR0 bits a MOV to CR0 may set (the rest of bits 31:0 are ignored on write and read as 0; 63:32 must be 0).</summary>
    public const ulong Cr0Defined = Cr0Pe | Cr0Mp | Cr0Em | Cr0Ts | Cr0Et | Cr0Ne | Cr0Wp | Cr0Am | Cr0Nw | Cr0Cd | Cr0Pg;

    public const ulong Cr4Tsd = 1UL << 2, Cr4De = 1UL << 3, Cr4Pse = 1UL << 4, Cr4Pae = 1UL << 5, Cr4Mce = 1UL << 6, Cr4Pge = 1UL << 7;
    public const ulong Cr4Pce = 1UL << 8, Cr4Osfxsr = 1UL << 9, Cr4Osxmmexcpt = 1UL << 10, Cr4Umip = 1UL << 11, Cr4Vmxe = 1UL << 13;
    public const ulong Cr4Fsgsbase = 1UL << 16, Cr4Pcide = 1UL << 17, Cr4Osxsave = 1UL << 18, Cr4Smep = 1UL << 20, Cr4Smap = 1UL << 21;
    /// <summary>CR4 bits this processor implements; setting any other bit is #GP(0) (SDM Vol. 2A MOV—Move to/from Control Registers).</summary>
    public const ulong Cr4Supported = Cr4Tsd | Cr4De | Cr4Pse | Cr4Pae | Cr4Mce | Cr4Pge | Cr4Pce | Cr4Osfxsr | Cr4Osxmmexcpt | Cr4Umip
        | Cr4Vmxe | Cr4Fsgsbase | Cr4Pcide | Cr4Osxsave | Cr4Smep | Cr4Smap;
    /// <summary>CR4 bits whose change flushes the TLBs (SDM Vol. 3A §4.10.4.1: PAE, PGE, PSE, PCIDE, SMEP, SMAP... ).</summary>
    public const ulong Cr4PagingBits = Cr4Pse | Cr4Pae | Cr4Pge | Cr4Pcide | Cr4Smep | Cr4Smap;

    public const ulong EferSce = 1UL << 0, EferLme = 1UL << 8, EferLma = 1UL << 10, EferNxe = 1UL << 11;
    /// <summary>EFER bits WRMSR may set (LMA is read-only and keeps its value).</summary>
    public const ulong EferWritable = EferSce | EferLme | EferNxe;
}
