using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// Guest registers kept in host registers across a block: a pass over the block's host code before it is encoded that
/// turns every access to a cached guest register's slot in <see cref="CpuState"/> (<c>[rbx + Gpr(n)]</c>) into the
/// register form on its host register. The block compiler loads the host registers at the block's entry and writes them
/// back at every exit (<see cref="BlockCompiler"/>), so CpuState is complete wherever the code can leave.
/// </summary>
/// <remarks>
/// Only whole-slot forms with an exact register equivalent are rewritten: loads (<c>mov</c>, zero- and sign-extending),
/// 64-, 16- and 8-bit stores (a 16- or 8-bit register move keeps the upper bits, as the store did) and a 64-bit add.
/// Any other access to a cached slot — a 32-bit store (which would zero bits 63:32 in register form), a high-byte
/// register, an indexed CpuState operand — makes the pass fail and the block is compiled without caching. Write-backs
/// of a host register nothing in the block writes become NOPs (one instruction for one, so label indices stay valid).
/// </remarks>
internal static class GprCache
{
    private const int Slots = 16;

    /// <summary>Rewrites <paramref name="code"/> in place for <paramref name="cache"/> (host register per guest slot, or None); false when a form cannot be rewritten.</summary>
    public static bool Apply(Instruction[] code, ReadOnlySpan<Register> cache)
    {
        int end = StateLayout.Gpr(0) + Slots * 8;
        Span<bool> written = stackalloc bool[Slots];
        written.Clear();
        var info = new InstructionInfoFactory();
        for (int k = 0; k < code.Length; k++)
        {
            ref Instruction ins = ref code[k];
            int memOp = MemoryOperandIndex(ins);
            if (memOp < 0 || ins.MemoryBase != Register.RBX) continue;
            long d = (long)ins.MemoryDisplacement64;
            if (ins.MemoryIndex != Register.None)
            {
                if (HasAny(cache)) return false;
                continue;
            }
            if (d < StateLayout.Gpr(0) || d >= end) continue;
            int s = (int)((d - StateLayout.Gpr(0)) / 8);
            Register c = cache[s];
            if (c == Register.None) continue;
            if ((d - StateLayout.Gpr(0)) % 8 != 0 || ins.SegmentPrefix != Register.None) return false;
            Instruction r;
            switch (ins.Code)
            {
                case Code.Mov_r64_rm64 when ins.Op0Register == c: continue; // the entry load
                case Code.Mov_rm64_r64 when ins.Op1Register == c: continue; // a write-back
                case Code.Mov_r64_rm64: r = Instruction.Create(Code.Mov_r64_rm64, ins.Op0Register, c); break;
                case Code.Mov_r32_rm32: r = Instruction.Create(Code.Mov_r32_rm32, ins.Op0Register, GprForwarding.Low(c, 4)); break;
                case Code.Movzx_r32_rm8: r = Instruction.Create(Code.Movzx_r32_rm8, ins.Op0Register, GprForwarding.Low(c, 1)); break;
                case Code.Movzx_r32_rm16: r = Instruction.Create(Code.Movzx_r32_rm16, ins.Op0Register, GprForwarding.Low(c, 2)); break;
                case Code.Movzx_r64_rm8: r = Instruction.Create(Code.Movzx_r64_rm8, ins.Op0Register, GprForwarding.Low(c, 1)); break;
                case Code.Movzx_r64_rm16: r = Instruction.Create(Code.Movzx_r64_rm16, ins.Op0Register, GprForwarding.Low(c, 2)); break;
                case Code.Movsx_r32_rm8: r = Instruction.Create(Code.Movsx_r32_rm8, ins.Op0Register, GprForwarding.Low(c, 1)); break;
                case Code.Movsx_r32_rm16: r = Instruction.Create(Code.Movsx_r32_rm16, ins.Op0Register, GprForwarding.Low(c, 2)); break;
                case Code.Movsx_r64_rm8: r = Instruction.Create(Code.Movsx_r64_rm8, ins.Op0Register, GprForwarding.Low(c, 1)); break;
                case Code.Movsx_r64_rm16: r = Instruction.Create(Code.Movsx_r64_rm16, ins.Op0Register, GprForwarding.Low(c, 2)); break;
                case Code.Movsxd_r64_rm32: r = Instruction.Create(Code.Movsxd_r64_rm32, ins.Op0Register, GprForwarding.Low(c, 4)); break;
                case Code.Mov_rm64_r64: r = Instruction.Create(Code.Mov_r64_rm64, c, ins.Op1Register); break;
                case Code.Mov_rm16_r16: r = Instruction.Create(Code.Mov_r16_rm16, GprForwarding.Low(c, 2), ins.Op1Register); break;
                case Code.Mov_rm8_r8 when ins.Op1Register is not (Register.AH or Register.CH or Register.DH or Register.BH):
                    r = Instruction.Create(Code.Mov_r8_rm8, GprForwarding.Low(c, 1), ins.Op1Register);
                    break;
                case Code.Add_rm64_r64: r = Instruction.Create(Code.Add_r64_rm64, c, ins.Op1Register); break;
                default: return false;
            }
            r.IP = ins.IP;
            ins = r;
        }
        // Which host registers the block writes (besides the entry loads): the others need no write-back.
        for (int k = 0; k < code.Length; k++)
        {
            Instruction ins = code[k];
            if (ins.Code == Code.Mov_r64_rm64 && ins.Op1Kind == OpKind.Memory && ins.MemoryBase == Register.RBX
                && ins.MemoryIndex == Register.None) continue; // an entry load (the only CpuState form left)
            if (ins.Mnemonic == Mnemonic.Pop) continue; // the epilogue restores the host's callee-saved registers
            foreach (UsedRegister u in info.GetInfo(ins).GetUsedRegisters())
            {
                if (u.Access is not (OpAccess.Write or OpAccess.CondWrite or OpAccess.ReadWrite or OpAccess.ReadCondWrite)) continue;
                Register full = u.Register.GetFullRegister();
                for (int s = 0; s < Slots; s++)
                {
                    if (cache[s] == full) written[s] = true;
                }
            }
        }
        for (int k = 0; k < code.Length; k++)
        {
            ref Instruction ins = ref code[k];
            if (ins.Code != Code.Mov_rm64_r64 || ins.MemoryBase != Register.RBX || ins.MemoryIndex != Register.None) continue;
            long d = (long)ins.MemoryDisplacement64;
            if (d < StateLayout.Gpr(0) || d >= end) continue;
            int s = (int)((d - StateLayout.Gpr(0)) / 8);
            if (cache[s] == Register.None || ins.Op1Register != cache[s] || written[s]) continue;
            Instruction nop = Instruction.Create(Code.Nopd);
            nop.IP = ins.IP;
            ins = nop;
        }
        return true;
    }

    private static bool HasAny(ReadOnlySpan<Register> cache)
    {
        foreach (Register r in cache)
        {
            if (r != Register.None) return true;
        }
        return false;
    }

    /// <summary>Index of <paramref name="ins"/>'s memory operand, or -1.</summary>
    private static int MemoryOperandIndex(in Instruction ins)
    {
        for (int o = 0; o < ins.OpCount; o++)
        {
            if (ins.GetOpKind(o) == OpKind.Memory) return o;
        }
        return -1;
    }
}
