using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Translator.HostAsm;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// Lazy flag records kept only on the side exits. An instruction whose flags nothing reads before a later instruction
/// of the run writes every arithmetic flag may still have them seen by the interpreter, when an access in between
/// misses the TLB and leaves. Its record (op, size, result, sources) is then not stored inline: the exit stub of each
/// such access rebuilds it from the guest registers it names, which stay in host registers (GprCache) and unchanged
/// until the flags are overwritten. A CMP or TEST deferred so costs no host instruction on the path that stays.
/// </summary>
internal sealed unsafe partial class BlockCompiler
{
    /// <summary>What the instruction was, for rebuilding its record.</summary>
    private enum DeferredKind : byte { Add, Sub, Cmp, Logic, Test, Inc, Dec }

    /// <summary>A lazy record an exit stub rebuilds: destination and source host registers (source -1: the immediate).</summary>
    private readonly record struct DeferredRecord(DeferredKind Kind, int Size, int Dest, int Source, ulong Imm);

    /// <summary>The record deferred by an earlier instruction of the run and not yet overwritten, or null.</summary>
    private DeferredRecord? _pending;

    /// <summary>The pending record when the instruction being emitted began.</summary>
    private DeferredRecord? _pendingAtStart;

    /// <summary>The instruction being emitted deferred its own record.</summary>
    private bool _deferredNow;

    /// <summary>The record pending when instruction j began (its exit stub rebuilds it), per instruction of the run.</summary>
    private DeferredRecord?[] _missRecord = [];

    /// <summary>
    /// Whether instruction <paramref name="j"/> (destination guest register <paramref name="dest"/>, source register
    /// <paramref name="source"/> or -1) may defer its record: the instructions after it up to the next one writing
    /// every arithmetic flag are all of the simple kinds whose only way out is a TLB-miss exit, none reads a flag, and
    /// none writes either named register. Otherwise (a reader, a branch, the end of the run first) the record is stored.
    /// </summary>
    private bool CanDefer(int j, int dest, int source)
    {
        for (int m = j + 1; m < _covered; m++)
        {
            Instr* i = _first + m;
            Code code = (Code)i->Code;
            Mnemonic mn = code.Mnemonic();
            if (IsStringMove(code)) return false;
            bool writesAll = WritesAllFlags(i);
            // Anything else reads a flag (ADC/SBB, INC/DEC's CF, a CL shift that may keep them) or may leave otherwise.
            if (!writesAll && mn is not (Mnemonic.Mov or Mnemonic.Movzx or Mnemonic.Movsx or Mnemonic.Movsxd or Mnemonic.Lea or Mnemonic.Nop)) return false;
            if (mn is Mnemonic.Cmp or Mnemonic.Test) return true; // writes no register
            int written = i->Op0 < 16 ? i->Op0 : i->Op0 >= Instr.Gpr8High && i->Op0 < Instr.Gpr8High + 4 ? i->Op0 - Instr.Gpr8High : -1;
            if (mn != Mnemonic.Nop && written >= 0 && (written == dest || written == source)) return false;
            if (writesAll) return true;
        }
        return false;
    }

    /// <summary>Makes <paramref name="r"/> the pending record of the instruction being emitted (its flags: see the type).</summary>
    private void Defer(DeferredRecord r)
    {
        _pending = r;
        _deferredNow = true;
        DropFlagState();
    }

    /// <summary>Whether a supported instruction writes every arithmetic flag (the interpreter's values), whatever its operands.</summary>
    private static bool WritesAllFlags(Instr* i)
    {
        Code code = (Code)i->Code;
        return code.Mnemonic() switch
        {
            Mnemonic.Add or Mnemonic.Or or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor or Mnemonic.Cmp or Mnemonic.Test => true,
            Mnemonic.Imul => code.ToOpCode().OpCount >= 2,
            Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar => i->Op1 == Instr.NoRegister,
            _ => false,
        };
    }

    /// <summary>Emits the stores of <paramref name="r"/> into CpuState's lazy record (exit stubs). Clobbers RAX RCX RDX and the host flags.</summary>
    private void EmitRecord(DeferredRecord r)
    {
        LazyFlagOp op = r.Kind switch
        {
            DeferredKind.Add => LazyFlagOp.Add,
            DeferredKind.Sub or DeferredKind.Cmp => LazyFlagOp.Sub,
            DeferredKind.Inc => LazyFlagOp.Inc,
            DeferredKind.Dec => LazyFlagOp.Dec,
            _ => LazyFlagOp.Logic,
        };
        A.mov(__dword_ptr[rbx + StateLayout.LazyOp], (int)op);
        A.mov(__dword_ptr[rbx + StateLayout.LazySize], r.Size);
        // The second source as the inline path has it: the immediate as MovImm loads it, a register zero-extended.
        if (r.Kind is DeferredKind.Inc or DeferredKind.Dec) A.mov(ecx, 1);
        else if (r.Source < 0) _h.MovImm(Rcx, r.Imm);
        else Copy(Rcx, r.Source, r.Size);
        switch (r.Kind)
        {
            case DeferredKind.Add: case DeferredKind.Inc: // result = dest, first source = dest - second
                Copy(Rdx, r.Dest, r.Size);
                _h.Alu(Op.Sub, r.Size, Rdx, Rcx);
                Store(r.Dest, Rdx, Rcx);
                break;
            case DeferredKind.Sub: case DeferredKind.Dec: // result = dest, first source = dest + second
                Copy(Rdx, r.Dest, r.Size);
                _h.Alu(Op.Add, r.Size, Rdx, Rcx);
                Store(r.Dest, Rdx, Rcx);
                break;
            case DeferredKind.Cmp: // result = dest - second, first source = dest
                Copy(Rdx, r.Dest, r.Size);
                Copy(Rax, r.Dest, r.Size);
                _h.Alu(Op.Sub, r.Size, Rax, Rcx);
                Store(Rax, Rdx, Rcx);
                break;
            case DeferredKind.Logic: // result = dest
                A.mov(__qword_ptr[rbx + StateLayout.LazyResult], Q(r.Dest));
                break;
            case DeferredKind.Test: // result = dest & source
                Copy(Rax, r.Dest, r.Size);
                _h.Alu(Op.And, r.Size, Rax, Rcx);
                A.mov(__qword_ptr[rbx + StateLayout.LazyResult], rax);
                break;
        }

        void Store(int result, int src1, int src2)
        {
            A.mov(__qword_ptr[rbx + StateLayout.LazyResult], Q(result));
            A.mov(__qword_ptr[rbx + StateLayout.LazySrc1], Q(src1));
            A.mov(__qword_ptr[rbx + StateLayout.LazySrc2], Q(src2));
        }
    }

    /// <summary>to = from, zero-extended from 32 bits when <paramref name="size"/> is 4.</summary>
    private void Copy(int to, int from, int size)
    {
        if (size == 4) A.mov(R32Of(to), R32Of(from));
        else A.mov(Q(to), Q(from));
    }
}
