namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>RFLAGS bits (SDM Vol. 1 §3.4.3 "EFLAGS Register").</summary>
internal static class RflagsBits
{
    public const ulong CF = 1UL << 0;
    public const ulong Reserved1 = 1UL << 1;
    public const ulong PF = 1UL << 2;
    public const ulong AF = 1UL << 4;
    public const ulong ZF = 1UL << 6;
    public const ulong SF = 1UL << 7;
    public const ulong TF = 1UL << 8;
    public const ulong IF = 1UL << 9;
    public const ulong DF = 1UL << 10;
    public const ulong OF = 1UL << 11;
    public const ulong IOPL = 3UL << 12;
    public const ulong NT = 1UL << 14;
    public const ulong RF = 1UL << 16;
    public const ulong VM = 1UL << 17;
    public const ulong AC = 1UL << 18;
    public const ulong VIF = 1UL << 19;
    public const ulong VIP = 1UL << 20;
    public const ulong ID = 1UL << 21;

    /// <summary>The six arithmetic status flags.</summary>
    public const ulong Arith = CF | PF | AF | ZF | SF | OF;

    /// <summary>Every bit software can ever set.</summary>
    public const ulong Writable = Arith | TF | IF | DF | IOPL | NT | RF | VM | AC | VIF | VIP | ID;
}
