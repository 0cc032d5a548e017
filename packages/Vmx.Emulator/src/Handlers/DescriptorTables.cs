using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>
/// LGDT / LIDT / SGDT / SIDT (SDM Vol. 2A "LGDT/LIDT—Load Global/Interrupt Descriptor Table Register",
/// Vol. 2B "SGDT—Store Global Descriptor Table Register", "SIDT—Store Interrupt Descriptor Table Register").
/// Sub bit 0 = IDTR (else GDTR); <see cref="Instr.OpSize"/> is overridden at registration with the operand size (2, 4, 8).
/// With the VMX secondary control "descriptor-table exiting" they cause VM exit 46 (GDTR/IDTR access, SDM Vol. 3C
/// §26.1.3) after the privilege checks (§26.1.1: privilege-based faults have priority) and before the memory access.
/// </summary>
internal static unsafe class DescriptorTables
{
    /// <summary>Sub bit 0: the instruction works on IDTR.</summary>
    public const byte Idt = 1;

    /// <summary>Whether the processor is in protected mode at CPL &gt; 0 or in virtual-8086 mode.</summary>
    private static bool NotCpl0(Core c)
        => (c.S.Cr0 & 1) != 0 && ((c.S.Rflags & RflagsBits.VM) != 0 || (c.S.Cs.Selector & 3) != 0);

    /// <summary>LGDT / LIDT m16&amp;32 / m16&amp;64.</summary>
    public static int Load(Core c, Instr* i)
    {
        // SDM LGDT: #GP(0) if CPL != 0; #UD with a register operand (Iced decodes mod = 11 as other instructions).
        if (i->Op0 != Instr.MemoryOperand) return c.RaiseUD();
        if (NotCpl0(c)) return c.RaiseGP0();
        if (c.DescriptorTableExiting) return Exit(c, i, load: true);
        ulong lin = c.LinearAddress(i);
        if (!c.Read(lin, 2, out ulong limit)) return ExecStatus.Event;
        ulong baseAddr;
        if (c.Bitness == 64)
        {
            // 64-bit mode: 8-byte base regardless of operand size; a non-canonical base is #GP(0).
            if (!c.Read((lin + 2) & c.LinearMask, 8, out baseAddr)) return ExecStatus.Event;
            if (!IsCanonical(baseAddr)) return c.RaiseGP0();
        }
        else
        {
            if (!c.Read((lin + 2) & c.LinearMask, 4, out baseAddr)) return ExecStatus.Event;
            // Operand size 16: only the low 24 bits of the base are loaded (the high byte is zeroed).
            baseAddr = i->OpSize == 2 ? baseAddr & 0xFF_FFFF : (uint)baseAddr;
        }
        ref CpuState s = ref c.S;
        if ((i->Sub & Idt) != 0) { s.IdtrBase = baseAddr; s.IdtrLimit = (ushort)limit; }
        else { s.GdtrBase = baseAddr; s.GdtrLimit = (ushort)limit; }
        return ExecStatus.Continue;
    }

    /// <summary>SGDT / SIDT m16&amp;32 / m16&amp;64.</summary>
    public static int Store(Core c, Instr* i)
    {
        if (i->Op0 != Instr.MemoryOperand) return c.RaiseUD();
        // SDM SGDT: with CR4.UMIP = 1, CPL > 0 is #GP(0).
        if ((c.S.Cr4 & (1UL << 11)) != 0 && NotCpl0(c)) return c.RaiseGP0();
        if (c.DescriptorTableExiting) return Exit(c, i, load: false);
        ref CpuState s = ref c.S;
        bool idt = (i->Sub & Idt) != 0;
        ulong limit = idt ? s.IdtrLimit : s.GdtrLimit;
        ulong baseAddr = idt ? s.IdtrBase : s.GdtrBase;
        ulong lin = c.LinearAddress(i);
        // Outside 64-bit mode the full 32-bit base is stored whatever the operand size; 64-bit mode stores 8 bytes.
        int baseSize = c.Bitness == 64 ? 8 : 4;
        ulong baseLin = (lin + 2) & c.LinearMask;
        // Check both parts first so a fault leaves memory unchanged.
        if (!c.Probe(lin, 2, MemoryAccess.Write) || !c.Probe(baseLin, baseSize, MemoryAccess.Write)) return ExecStatus.Event;
        if (!c.Write(lin, 2, limit)) return ExecStatus.Event;
        if (!c.Write(baseLin, baseSize, baseSize == 4 ? (uint)baseAddr : baseAddr)) return ExecStatus.Event;
        return ExecStatus.Continue;
    }

    /// <summary>
    /// VM exit 46 with the instruction information of SDM Vol. 3C table 28-10 (GDTR/IDTR access): scaling (1:0),
    /// address size (9:7), operand size 32 (11), segment (17:15), index (21:18) and invalid (22), base (26:23) and
    /// invalid (27), identity SGDT 0 / SIDT 1 / LGDT 2 / LIDT 3 (29:28). The exit qualification is the displacement.
    /// RIP-relative operands report no base and the decoded absolute address as the displacement.
    /// </summary>
    private static int Exit(Core c, Instr* i, bool load)
    {
        uint info = i->MemScaleShift & 3u;
        info |= (uint)(i->AddrSize == 8 ? 2 : i->AddrSize == 4 ? 1 : 0) << 7;
        if (i->OpSize != 2) info |= 1u << 11;
        info |= (uint)(i->MemSeg & 7) << 15;
        info |= i->MemIndex == Instr.NoRegister ? 1u << 22 : (uint)(i->MemIndex & 15) << 18;
        info |= i->MemBase == Instr.NoRegister ? 1u << 27 : (uint)(i->MemBase & 15) << 23;
        info |= (uint)((load ? 2 : 0) | ((i->Sub & Idt) != 0 ? 1 : 0)) << 28;
        int status = c.RaiseExit(i, BasicExitReason.GdtrIdtrAccess, (ulong)i->Disp);
        c.Event.InstructionInformation = info;
        return status;
    }

    /// <summary>48-bit canonical check (SDM Vol. 1 §3.3.7.1).</summary>
    public static bool IsCanonical(ulong a) => (ulong)((long)(a << 16) >> 16) == a;
}
