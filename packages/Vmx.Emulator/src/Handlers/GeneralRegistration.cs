using Iced.Intel;
using VmmKit.Vmx.Emulator.Handlers;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Fills the handler table with the general-purpose instruction set, by mnemonic and operand form.</summary>
internal static unsafe partial class HandlerTable
{
    static partial void RegisterGeneral(HandlerEntry[] table)
    {
        for (int k = 0; k < table.Length; k++)
        {
            var code = (Code)k;
            OpCodeInfo op = code.ToOpCode();
            if (op.Encoding != EncodingKind.Legacy || !op.IsInstruction) continue;
            RegisterOne(table, code, op);
        }
    }

    private static bool HasKind(OpCodeInfo op, OpCodeOperandKind kind)
    {
        for (int n = 0; n < op.OpCount; n++)
        {
            if (op.GetOpKind(n) == kind) return true;
        }
        return false;
    }

    private static bool IsSegmentKind(OpCodeOperandKind k) => k is OpCodeOperandKind.seg_reg or OpCodeOperandKind.es
        or OpCodeOperandKind.cs or OpCodeOperandKind.ss or OpCodeOperandKind.ds or OpCodeOperandKind.fs or OpCodeOperandKind.gs;

    private static bool HasSystemRegister(OpCodeInfo op)
    {
        for (int n = 0; n < op.OpCount; n++)
        {
            OpCodeOperandKind k = op.GetOpKind(n);
            if (IsSegmentKind(k) || k is OpCodeOperandKind.cr_reg or OpCodeOperandKind.dr_reg or OpCodeOperandKind.tr_reg or OpCodeOperandKind.bnd_reg
                || k is OpCodeOperandKind.mm_reg or OpCodeOperandKind.mm_rm or OpCodeOperandKind.mm_or_mem
                || k is OpCodeOperandKind.xmm_reg or OpCodeOperandKind.xmm_rm or OpCodeOperandKind.xmm_or_mem) return true;
        }
        return false;
    }

    /// <summary>Stack operand size in bytes of a push/pop/call/ret style code.</summary>
    private static byte StackOperandSize(OpCodeInfo op)
    {
        if (op.OperandSize != 0) return (byte)(op.OperandSize / 8);
        return (byte)(op.Mode64 && !op.Mode32 ? 8 : 4);
    }

    private static void RegisterOne(HandlerEntry[] t, Code code, OpCodeInfo op)
    {
        const byte End = HandlerFlags.EndsBlock;
        Mnemonic m = op.Mnemonic;
        if (code.IsStringInstruction())
        {
            switch (m)
            {
                case Mnemonic.Movsb: case Mnemonic.Movsw: case Mnemonic.Movsd: case Mnemonic.Movsq:
                    Set(t, code, &Strings.String, Strings.Movs); return;
                case Mnemonic.Cmpsb: case Mnemonic.Cmpsw: case Mnemonic.Cmpsd: case Mnemonic.Cmpsq:
                    Set(t, code, &Strings.String, Strings.Cmps); return;
                case Mnemonic.Scasb: case Mnemonic.Scasw: case Mnemonic.Scasd: case Mnemonic.Scasq:
                    Set(t, code, &Strings.String, Strings.Scas); return;
                case Mnemonic.Lodsb: case Mnemonic.Lodsw: case Mnemonic.Lodsd: case Mnemonic.Lodsq:
                    Set(t, code, &Strings.String, Strings.Lods); return;
                case Mnemonic.Stosb: case Mnemonic.Stosw: case Mnemonic.Stosd: case Mnemonic.Stosq:
                    Set(t, code, &Strings.String, Strings.Stos); return;
                case Mnemonic.Insb: case Mnemonic.Insw: case Mnemonic.Insd:
                    Set(t, code, &SystemInstructions.Io, 1 | 2, End); return;
                case Mnemonic.Outsb: case Mnemonic.Outsw: case Mnemonic.Outsd:
                    Set(t, code, &SystemInstructions.Io, 2, End); return;
            }
            return;
        }
        ConditionCode cc = code.ConditionCode();
        byte ccByte = (byte)(cc == ConditionCode.None ? 0 : (int)cc - 1);
        switch (m)
        {
            case Mnemonic.Add: Alu(t, code, Arithmetic.Add); break;
            case Mnemonic.Or: Alu(t, code, Arithmetic.Or); break;
            case Mnemonic.Adc: Set(t, code, &Arithmetic.Alu, Arithmetic.Adc); break;
            case Mnemonic.Sbb: Set(t, code, &Arithmetic.Alu, Arithmetic.Sbb); break;
            case Mnemonic.And: Alu(t, code, Arithmetic.And); break;
            case Mnemonic.Sub: Alu(t, code, Arithmetic.Sub); break;
            case Mnemonic.Xor: Alu(t, code, Arithmetic.Xor); break;
            case Mnemonic.Cmp: Alu(t, code, Arithmetic.Cmp); break;
            case Mnemonic.Test: Alu(t, code, Arithmetic.Test); break;
            case Mnemonic.Inc: Set(t, code, &Arithmetic.IncDec, 0); break;
            case Mnemonic.Dec: Set(t, code, &Arithmetic.IncDec, 1); break;
            case Mnemonic.Neg: Set(t, code, &Arithmetic.Neg); break;
            case Mnemonic.Not: Set(t, code, &Arithmetic.Not); break;
            case Mnemonic.Mul: Set(t, code, &Arithmetic.MulOne, 0); break;
            case Mnemonic.Imul:
                if (op.OpCount == 1) Set(t, code, &Arithmetic.MulOne, 1);
                else Set(t, code, &Arithmetic.ImulTwo, (byte)(op.OpCount == 3 ? 1 : 0));
                break;
            case Mnemonic.Div: Set(t, code, &Arithmetic.Div, 0); break;
            case Mnemonic.Idiv: Set(t, code, &Arithmetic.Div, 1); break;

            case Mnemonic.Mov:
                if (op.OpCount == 2 && op.GetOpKind(1) == OpCodeOperandKind.seg_reg) Set(t, code, &DataMovement.MovFromSreg);
                else if (op.OpCount == 2 && op.GetOpKind(0) == OpCodeOperandKind.seg_reg) Set(t, code, &Segments.MovToSreg);
                else if (op.OpCount == 2 && op.GetOpKind(1) == OpCodeOperandKind.dr_reg) Set(t, code, &SystemRegisters.MovDr, 1, End);
                else if (op.OpCount == 2 && op.GetOpKind(0) == OpCodeOperandKind.dr_reg) Set(t, code, &SystemRegisters.MovDr, 0, End);
                else if (op.OpCount == 2 && op.GetOpKind(1) == OpCodeOperandKind.cr_reg) Set(t, code, &ControlRegisters.MovFromCr, 0, End);
                else if (op.OpCount == 2 && op.GetOpKind(0) == OpCodeOperandKind.cr_reg) Set(t, code, &ControlRegisters.MovToCr, 0, End);
                else if (!HasSystemRegister(op)) Set(t, code, &DataMovement.MovRegFast);
                break;
            case Mnemonic.Movzx: Set(t, code, &DataMovement.MovExtend, 0); break;
            case Mnemonic.Movsx: case Mnemonic.Movsxd: Set(t, code, &DataMovement.MovExtend, 1); break;
            case Mnemonic.Lea: Set(t, code, &DataMovement.Lea); break;
            case Mnemonic.Xchg: Set(t, code, &DataMovement.Xchg); break;
            case Mnemonic.Cmpxchg: Set(t, code, &DataMovement.Cmpxchg); break;
            case Mnemonic.Cmpxchg8b: case Mnemonic.Cmpxchg16b: Set(t, code, &DataMovement.Cmpxchg8b16b); break;
            case Mnemonic.Xadd: Set(t, code, &DataMovement.Xadd); break;
            case Mnemonic.Bswap: Set(t, code, &DataMovement.Bswap); break;
            case Mnemonic.Movbe: Set(t, code, &DataMovement.Movbe); break;
            case Mnemonic.Cbw: Set(t, code, &DataMovement.ConvertAccumulator, 2); break;
            case Mnemonic.Cwde: Set(t, code, &DataMovement.ConvertAccumulator, 4); break;
            case Mnemonic.Cdqe: Set(t, code, &DataMovement.ConvertAccumulator, 8); break;
            case Mnemonic.Cwd: Set(t, code, &DataMovement.ConvertToDouble, 2); break;
            case Mnemonic.Cdq: Set(t, code, &DataMovement.ConvertToDouble, 4); break;
            case Mnemonic.Cqo: Set(t, code, &DataMovement.ConvertToDouble, 8); break;
            case Mnemonic.Nop: case Mnemonic.Lfence: case Mnemonic.Mfence: case Mnemonic.Sfence:
            case Mnemonic.Prefetchnta: case Mnemonic.Prefetcht0: case Mnemonic.Prefetcht1: case Mnemonic.Prefetcht2:
            case Mnemonic.Prefetchw: case Mnemonic.Endbr32: case Mnemonic.Endbr64:
                Set(t, code, &DataMovement.Nop); break;

            case Mnemonic.Push:
                if (op.OpCount == 1 && IsSegmentKind(op.GetOpKind(0))) Set(t, code, &Stack.PushSreg, StackOperandSize(op));
                else Set(t, code, &Stack.Push, StackOperandSize(op));
                break;
            case Mnemonic.Pop:
                if (op.OpCount == 1 && IsSegmentKind(op.GetOpKind(0))) Set(t, code, &Segments.PopSreg, StackOperandSize(op));
                else Set(t, code, &Stack.Pop, StackOperandSize(op));
                break;
            case Mnemonic.Pusha: case Mnemonic.Pushad: Set(t, code, &Stack.Pusha, StackOperandSize(op)); break;
            case Mnemonic.Popa: case Mnemonic.Popad: Set(t, code, &Stack.Popa, StackOperandSize(op)); break;
            case Mnemonic.Pushf: case Mnemonic.Pushfd: case Mnemonic.Pushfq: Set(t, code, &Stack.Pushf, StackOperandSize(op)); break;
            case Mnemonic.Popf: case Mnemonic.Popfd: case Mnemonic.Popfq: Set(t, code, &Stack.Popf, StackOperandSize(op), End); break;
            case Mnemonic.Enter: Set(t, code, &Stack.Enter, StackOperandSize(op)); break;
            case Mnemonic.Leave: Set(t, code, &Stack.Leave, StackOperandSize(op)); break;

            case Mnemonic.Rol: Set(t, code, &Shifts.ShiftFast, Shifts.Rol); break;
            case Mnemonic.Ror: Set(t, code, &Shifts.ShiftFast, Shifts.Ror); break;
            case Mnemonic.Rcl: Set(t, code, &Shifts.ShiftFast, Shifts.Rcl); break;
            case Mnemonic.Rcr: Set(t, code, &Shifts.ShiftFast, Shifts.Rcr); break;
            case Mnemonic.Shl: Set(t, code, &Shifts.ShiftFast, Shifts.Shl); break;
            case Mnemonic.Sal: Set(t, code, &Shifts.ShiftFast, Shifts.Sal); break;
            case Mnemonic.Shr: Set(t, code, &Shifts.ShiftFast, Shifts.Shr); break;
            case Mnemonic.Sar: Set(t, code, &Shifts.ShiftFast, Shifts.Sar); break;
            case Mnemonic.Shld: Set(t, code, &Shifts.DoubleShift, 0); break;
            case Mnemonic.Shrd: Set(t, code, &Shifts.DoubleShift, 1); break;

            case Mnemonic.Bt: Set(t, code, &Bits.BitTest, 0); break;
            case Mnemonic.Bts: Set(t, code, &Bits.BitTest, 1); break;
            case Mnemonic.Btr: Set(t, code, &Bits.BitTest, 2); break;
            case Mnemonic.Btc: Set(t, code, &Bits.BitTest, 3); break;
            case Mnemonic.Bsf: Set(t, code, &Bits.BitScan, 0); break;
            case Mnemonic.Bsr: Set(t, code, &Bits.BitScan, 1); break;
            case Mnemonic.Tzcnt: Set(t, code, &Bits.Count, 0); break;
            case Mnemonic.Lzcnt: Set(t, code, &Bits.Count, 1); break;
            case Mnemonic.Popcnt: Set(t, code, &Bits.Popcnt); break;

            case Mnemonic.Jmp:
                if (code.IsJmpShortOrNear()) Set(t, code, &ControlFlow.JmpRel);
                else if (code.IsJmpNearIndirect()) Set(t, code, &ControlFlow.JmpIndirect);
                else if (FarOperandSize(code) != 0) Set(t, code, &FarTransfers.JmpFar, FarOperandSize(code), End);
                break;
            case Mnemonic.Call:
                if (code.IsCallNear()) Set(t, code, &ControlFlow.CallRel, StackOperandSize(op));
                else if (code.IsCallNearIndirect()) Set(t, code, &ControlFlow.CallIndirect, StackOperandSize(op));
                else if (FarOperandSize(code) != 0) Set(t, code, &FarTransfers.CallFar, FarOperandSize(code), End);
                break;
            case Mnemonic.Ret: Set(t, code, &ControlFlow.Ret, StackOperandSize(op)); break;
            case Mnemonic.Retf: Set(t, code, &FarTransfers.RetFar, FarOperandSize(code), End); break;
            case Mnemonic.Iret: case Mnemonic.Iretd: case Mnemonic.Iretq: Set(t, code, &FarTransfers.Iret, FarOperandSize(code), End); break;
            case Mnemonic.Lgdt: Set(t, code, &DescriptorTables.Load, 0, End, DescriptorTableSize(code)); break;
            case Mnemonic.Lidt: Set(t, code, &DescriptorTables.Load, DescriptorTables.Idt, End, DescriptorTableSize(code)); break;
            case Mnemonic.Sgdt: Set(t, code, &DescriptorTables.Store, 0, End, DescriptorTableSize(code)); break;
            case Mnemonic.Sidt: Set(t, code, &DescriptorTables.Store, DescriptorTables.Idt, End, DescriptorTableSize(code)); break;
            case Mnemonic.Loop: Set(t, code, &ControlFlow.Loop, 0); break;
            case Mnemonic.Loope: Set(t, code, &ControlFlow.Loop, 1); break;
            case Mnemonic.Loopne: Set(t, code, &ControlFlow.Loop, 2); break;
            case Mnemonic.Jcxz: case Mnemonic.Jecxz: case Mnemonic.Jrcxz: Set(t, code, &ControlFlow.Jrcxz); break;

            case Mnemonic.Clc: Set(t, code, &FlagOps.FlagOp, FlagOps.Clc); break;
            case Mnemonic.Stc: Set(t, code, &FlagOps.FlagOp, FlagOps.Stc); break;
            case Mnemonic.Cmc: Set(t, code, &FlagOps.FlagOp, FlagOps.Cmc); break;
            case Mnemonic.Cld: Set(t, code, &FlagOps.FlagOp, FlagOps.Cld); break;
            case Mnemonic.Std: Set(t, code, &FlagOps.FlagOp, FlagOps.Std); break;
            case Mnemonic.Cli: Set(t, code, &FlagOps.FlagOp, FlagOps.Cli, End); break;
            case Mnemonic.Sti: Set(t, code, &FlagOps.FlagOp, FlagOps.Sti, End); break;
            case Mnemonic.Lahf: Set(t, code, &FlagOps.Lahf); break;
            case Mnemonic.Sahf: Set(t, code, &FlagOps.Sahf); break;

            case Mnemonic.Daa: Set(t, code, &Bcd.Daa); break;
            case Mnemonic.Das: Set(t, code, &Bcd.Das); break;
            case Mnemonic.Aaa: Set(t, code, &Bcd.AaaAas, 0); break;
            case Mnemonic.Aas: Set(t, code, &Bcd.AaaAas, 1); break;
            case Mnemonic.Aam: Set(t, code, &Bcd.Aam); break;
            case Mnemonic.Aad: Set(t, code, &Bcd.Aad); break;
            case Mnemonic.Bound: Set(t, code, &Bcd.Bound); break;
            case Mnemonic.Xlatb: Set(t, code, &Bcd.Xlat); break;
            case Mnemonic.Salc: Set(t, code, &Bcd.Salc); break;

            case Mnemonic.Int: Set(t, code, &Interrupts.Int, Interrupts.IntN, End); break;
            case Mnemonic.Int3: Set(t, code, &Interrupts.Int, Interrupts.Int3, End); break;
            case Mnemonic.Into: Set(t, code, &Interrupts.Int, Interrupts.Into, End); break;
            case Mnemonic.Int1: Set(t, code, &Interrupts.Int, Interrupts.Int1, End); break;
            case Mnemonic.Syscall: Set(t, code, &Interrupts.Syscall, 0, End); break;
            case Mnemonic.Sysret: case Mnemonic.Sysretq: Set(t, code, &Interrupts.Sysret, 0, End); break;
            case Mnemonic.Sysenter: Set(t, code, &Interrupts.Sysenter, 0, End); break;
            case Mnemonic.Sysexit: case Mnemonic.Sysexitq: Set(t, code, &Interrupts.Sysexit, 0, End); break;
            case Mnemonic.Pause: Set(t, code, &SystemRegisters.Pause, 0, End); break;
            case Mnemonic.Invlpg: Set(t, code, &SystemRegisters.Invlpg, 0, End); break;
            case Mnemonic.Invpcid: Set(t, code, &SystemRegisters.Invpcid, 0, End); break;
            case Mnemonic.Swapgs: Set(t, code, &SystemRegisters.Swapgs, 0, End); break;
            case Mnemonic.Rdfsbase: Set(t, code, &SystemRegisters.FsGsBase, 0); break;
            case Mnemonic.Rdgsbase: Set(t, code, &SystemRegisters.FsGsBase, 1); break;
            case Mnemonic.Wrfsbase: Set(t, code, &SystemRegisters.FsGsBase, 2, End); break;
            case Mnemonic.Wrgsbase: Set(t, code, &SystemRegisters.FsGsBase, 3, End); break;
            case Mnemonic.Rdtscp: Set(t, code, &SystemRegisters.Rdtscp, 0, End); break;
            case Mnemonic.Wbinvd: Set(t, code, &SystemRegisters.CacheInvalidate, 0, End); break;
            case Mnemonic.Invd: Set(t, code, &SystemRegisters.CacheInvalidate, 1, End); break;
            case Mnemonic.Ltr: Set(t, code, &SystemRegisters.LoadSystemSegment, 0, End); break;
            case Mnemonic.Lldt: Set(t, code, &SystemRegisters.LoadSystemSegment, 1, End); break;
            case Mnemonic.Str: Set(t, code, &SystemRegisters.StoreSystemSegment, 0); break;
            case Mnemonic.Sldt: Set(t, code, &SystemRegisters.StoreSystemSegment, 1); break;
            case Mnemonic.Lar: Set(t, code, &SegmentQueries.Query, SegmentQueries.Lar); break;
            case Mnemonic.Lsl: Set(t, code, &SegmentQueries.Query, SegmentQueries.Lsl); break;
            case Mnemonic.Verr: Set(t, code, &SegmentQueries.Query, SegmentQueries.Verr); break;
            case Mnemonic.Verw: Set(t, code, &SegmentQueries.Query, SegmentQueries.Verw); break;
            case Mnemonic.Clac: Set(t, code, &FlagOps.FlagOp, FlagOps.Clac, End); break;
            case Mnemonic.Stac: Set(t, code, &FlagOps.FlagOp, FlagOps.Stac, End); break;
            case Mnemonic.Clts: Set(t, code, &ControlRegisters.Clts, 0, End); break;
            case Mnemonic.Lmsw: Set(t, code, &ControlRegisters.Lmsw, 0, End); break;
            case Mnemonic.Smsw: Set(t, code, &ControlRegisters.Smsw); break;
            case Mnemonic.Cpuid: Set(t, code, &SystemInstructions.Cpuid, 0, End); break;
            case Mnemonic.Hlt: Set(t, code, &SystemInstructions.Hlt, 0, End); break;
            case Mnemonic.Vmcall: Set(t, code, &SystemInstructions.Vmcall, 0, End); break;
            case Mnemonic.Rdmsr: Set(t, code, &SystemInstructions.Msr, 0, End); break;
            case Mnemonic.Wrmsr: Set(t, code, &SystemInstructions.Msr, 1, End); break;
            case Mnemonic.Rdtsc: Set(t, code, &SystemInstructions.Rdtsc, 0, End); break;
            case Mnemonic.In:
                Set(t, code, &SystemInstructions.Io, (byte)(1 | (HasKind(op, OpCodeOperandKind.imm8) ? 4 : 0)), End); break;
            case Mnemonic.Out:
                Set(t, code, &SystemInstructions.Io, (byte)(HasKind(op, OpCodeOperandKind.imm8) ? 4 : 0), End); break;

            default:
                if (cc != ConditionCode.None)
                {
                    if (code.IsJccShortOrNear()) Set(t, code, &ControlFlow.Jcc, ccByte);
                    else if (IsSetcc(m)) Set(t, code, &ControlFlow.Setcc, ccByte);
                    else if (IsCmovcc(m)) Set(t, code, &ControlFlow.Cmovcc, ccByte);
                }
                break;
        }
    }

    /// <summary>Operand size in bytes of far JMP/CALL/RET and IRET forms (0 for anything else).</summary>
    private static byte FarOperandSize(Code code) => code switch
    {
        Code.Jmp_ptr1616 or Code.Jmp_m1616 or Code.Call_ptr1616 or Code.Call_m1616 or Code.Retfw or Code.Retfw_imm16 or Code.Iretw => 2,
        Code.Jmp_ptr1632 or Code.Jmp_m1632 or Code.Call_ptr1632 or Code.Call_m1632 or Code.Retfd or Code.Retfd_imm16 or Code.Iretd => 4,
        Code.Jmp_m1664 or Code.Call_m1664 or Code.Retfq or Code.Retfq_imm16 or Code.Iretq => 8,
        _ => 0,
    };

    /// <summary>Operand size of LGDT/LIDT/SGDT/SIDT forms (the _16 forms have a 24-bit LGDT base).</summary>
    private static byte DescriptorTableSize(Code code) => code switch
    {
        Code.Lgdt_m1632_16 or Code.Lidt_m1632_16 or Code.Sgdt_m1632_16 or Code.Sidt_m1632_16 => 2,
        Code.Lgdt_m1664 or Code.Lidt_m1664 or Code.Sgdt_m1664 or Code.Sidt_m1664 => 8,
        _ => 4,
    };

    private static bool IsSetcc(Mnemonic m) => m is Mnemonic.Seta or Mnemonic.Setae or Mnemonic.Setb or Mnemonic.Setbe or Mnemonic.Sete
        or Mnemonic.Setg or Mnemonic.Setge or Mnemonic.Setl or Mnemonic.Setle or Mnemonic.Setne or Mnemonic.Setno or Mnemonic.Setnp
        or Mnemonic.Setns or Mnemonic.Seto or Mnemonic.Setp or Mnemonic.Sets;

    private static bool IsCmovcc(Mnemonic m) => m is Mnemonic.Cmova or Mnemonic.Cmovae or Mnemonic.Cmovb or Mnemonic.Cmovbe or Mnemonic.Cmove
        or Mnemonic.Cmovg or Mnemonic.Cmovge or Mnemonic.Cmovl or Mnemonic.Cmovle or Mnemonic.Cmovne or Mnemonic.Cmovno or Mnemonic.Cmovnp
        or Mnemonic.Cmovns or Mnemonic.Cmovo or Mnemonic.Cmovp or Mnemonic.Cmovs;

    private static void Alu(HandlerEntry[] t, Code code, byte op) => Set(t, code, &Arithmetic.AluRegFast, op);
}
