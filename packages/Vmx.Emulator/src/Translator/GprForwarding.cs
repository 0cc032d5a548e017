using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// A pass over a block's host code before it is encoded: a load of a guest register from <see cref="CpuState"/>
/// (<c>mov r, [rbx + Gpr(n)]</c>, also the zero- and sign-extending forms) becomes a register move when a host register
/// still holds the value the code last stored there (<c>mov [rbx + Gpr(n)], r64</c>). The stores stay, so CpuState is
/// complete at every exit as before; only the reload — a store-to-load forwarding round trip on the dependency chain
/// of the guest's computation — goes away.
/// </summary>
/// <remarks>
/// The pass walks the code in order and forgets what it knows at every label (a point other code may jump to:
/// loop heads, merges inside an instruction's code, the chained entry), at every call (the flag-materialising
/// stub clobbers scratch registers), when the holding host register is written (Iced's instruction info, implicit
/// operands included) and when the slot in CpuState is written by anything else.
/// </remarks>
internal static class GprForwarding
{
    private const int Slots = 16;

    /// <summary>Rewrites <paramref name="code"/> in place (one instruction for one, so label indices stay valid).</summary>
    public static void Apply(Instruction[] code)
    {
        Span<Register> holder = stackalloc Register[Slots];
        Span<byte> width = stackalloc byte[Slots]; // bytes of the slot the holder has (8, or 4 zero-extended)
        holder.Clear();
        var info = new InstructionInfoFactory();
        int first = StateLayout.Gpr(0), end = StateLayout.Gpr(0) + Slots * 8;
        for (int k = 0; k < code.Length; k++)
        {
            ref Instruction ins = ref code[k];
            if (ins.IP != 0) holder.Clear(); // a label: code may arrive here from elsewhere
            if (TryRewrite(ref ins, holder, width, first, end)) continue; // a register move: writes only its destination
            FlowControl flow = ins.FlowControl;
            if (flow is FlowControl.Call or FlowControl.IndirectCall)
            {
                holder.Clear();
                continue;
            }
            InstructionInfo used = info.GetInfo(ins);
            foreach (UsedRegister r in used.GetUsedRegisters())
            {
                if (r.Access is OpAccess.Write or OpAccess.CondWrite or OpAccess.ReadWrite or OpAccess.ReadCondWrite)
                    Forget(holder, r.Register.GetFullRegister());
            }
            foreach (UsedMemory m in used.GetUsedMemory())
            {
                if (m.Access is not (OpAccess.Write or OpAccess.CondWrite or OpAccess.ReadWrite or OpAccess.ReadCondWrite)) continue;
                if (m.Base != Register.RBX) continue; // only RBX addresses CpuState
                if (m.Index != Register.None)
                {
                    holder.Clear();
                    continue;
                }
                long lo = (long)m.Displacement, hi = lo + Math.Max(1, m.MemorySize.GetSize());
                for (int s = 0; s < Slots; s++)
                {
                    long a = first + s * 8;
                    if (lo < a + 8 && hi > a) holder[s] = Register.None;
                }
            }
            // mov qword [rbx + Gpr(n)], r64: r64 now holds guest register n.
            if (ins.Code == Code.Mov_rm64_r64 && ins.Op0Kind == OpKind.Memory && ins.MemoryBase == Register.RBX
                && ins.MemoryIndex == Register.None)
            {
                long d = (long)ins.MemoryDisplacement64;
                if (d >= first && d < end && (d - first) % 8 == 0 && ins.Op1Register is not (Register.RBX or Register.RSP))
                {
                    holder[(int)((d - first) / 8)] = ins.Op1Register;
                    width[(int)((d - first) / 8)] = 8;
                }
            }
            // mov r64, [rbx + Gpr(n)] / mov r32, [rbx + Gpr(n)]: r holds guest register n (or its low half, zero-extended).
            else if (ins.Code is Code.Mov_r64_rm64 or Code.Mov_r32_rm32 && ins.Op1Kind == OpKind.Memory && ins.MemoryBase == Register.RBX
                && ins.MemoryIndex == Register.None && ins.SegmentPrefix == Register.None)
            {
                long d = (long)ins.MemoryDisplacement64;
                Register dst = ins.Op0Register.GetFullRegister();
                if (d >= first && d < end && (d - first) % 8 == 0 && dst is not (Register.RBX or Register.RSP))
                {
                    int s = (int)((d - first) / 8);
                    holder[s] = dst;
                    width[s] = (byte)(ins.Code == Code.Mov_r64_rm64 ? 8 : 4);
                }
            }
        }
    }

    private static void Forget(Span<Register> holder, Register full)
    {
        for (int s = 0; s < holder.Length; s++)
        {
            if (holder[s] == full) holder[s] = Register.None;
        }
    }

    /// <summary>A load of a whole guest register slot whose value a host register holds: the register form instead.</summary>
    private static bool TryRewrite(ref Instruction ins, Span<Register> holder, Span<byte> width, int first, int end)
    {
        if (ins.OpCount != 2 || ins.Op1Kind != OpKind.Memory || ins.MemoryBase != Register.RBX || ins.MemoryIndex != Register.None
            || ins.SegmentPrefix != Register.None)
            return false;
        long d = (long)ins.MemoryDisplacement64;
        if (d < first || d >= end || (d - first) % 8 != 0) return false;
        int s = (int)((d - first) / 8);
        Register h = holder[s];
        if (h == Register.None) return false;
        if (ins.Code == Code.Mov_r64_rm64 && width[s] < 8) return false; // the holder has only the low half
        Register dst = ins.Op0Register;
        Instruction r;
        switch (ins.Code)
        {
            case Code.Mov_r64_rm64: r = Instruction.Create(Code.Mov_r64_rm64, dst, h); break;
            case Code.Mov_r32_rm32: r = Instruction.Create(Code.Mov_r32_rm32, dst, Low(h, 4)); break;
            case Code.Movzx_r32_rm8: r = Instruction.Create(Code.Movzx_r32_rm8, dst, Low(h, 1)); break;
            case Code.Movzx_r32_rm16: r = Instruction.Create(Code.Movzx_r32_rm16, dst, Low(h, 2)); break;
            case Code.Movzx_r64_rm8: r = Instruction.Create(Code.Movzx_r64_rm8, dst, Low(h, 1)); break;
            case Code.Movzx_r64_rm16: r = Instruction.Create(Code.Movzx_r64_rm16, dst, Low(h, 2)); break;
            case Code.Movsx_r32_rm8: r = Instruction.Create(Code.Movsx_r32_rm8, dst, Low(h, 1)); break;
            case Code.Movsx_r32_rm16: r = Instruction.Create(Code.Movsx_r32_rm16, dst, Low(h, 2)); break;
            case Code.Movsx_r64_rm8: r = Instruction.Create(Code.Movsx_r64_rm8, dst, Low(h, 1)); break;
            case Code.Movsx_r64_rm16: r = Instruction.Create(Code.Movsx_r64_rm16, dst, Low(h, 2)); break;
            case Code.Movsxd_r64_rm32: r = Instruction.Create(Code.Movsxd_r64_rm32, dst, Low(h, 4)); break;
            default: return false;
        }
        r.IP = ins.IP;
        ins = r;
        Register full = dst.GetFullRegister();
        Forget(holder, full); // the destination is overwritten (after the source was read)
        if (holder[s] == Register.None && r.Code == Code.Mov_r64_rm64)
        {
            holder[s] = full; // mov h, h: the holder keeps the whole value
            width[s] = 8;
        }
        return true;
    }

    /// <summary>The low <paramref name="size"/> bytes of 64-bit register <paramref name="full"/>.</summary>
    internal static Register Low(Register full, int size)
    {
        int n = full - Register.RAX;
        return size switch
        {
            4 => Register.EAX + n,
            2 => Register.AX + n,
            // AL CL DL BL, then SPL BPL SIL DIL R8L..R15L (Iced numbers AH-BH before SPL).
            _ => n < 4 ? Register.AL + n : Register.SPL + (n - 4),
        };
    }
}
