using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// Size-generic helpers over Iced's <see cref="Assembler"/>: host registers are named by number (x86 encoding order,
/// 0 RAX .. 15 R15) and an operation by its operand size in bytes, so the block compiler does not repeat itself per
/// size.
/// </summary>
internal sealed class HostAsm
{
    private static readonly AssemblerRegister64[] R64 = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
    private static readonly AssemblerRegister32[] R32 = [eax, ecx, edx, ebx, esp, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d];
    private static readonly AssemblerRegister16[] R16 = [ax, cx, dx, bx, sp, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w, r15w];
    private static readonly AssemblerRegister8[] R8 = [al, cl, dl, bl, spl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b, r15b];

    /// <summary>Host register numbers used by translated code.</summary>
    public const int Rax = 0, Rcx = 1, Rdx = 2, Rbx = 3, Rsi = 6, Rdi = 7, R8n = 8, R9n = 9, R10n = 10;

    /// <summary>Two-operand integer operations the compiler emits.</summary>
    public enum Op { Add, Or, And, Sub, Xor, Cmp, Test, Shl, Shr, Sar, Imul, Adc, Sbb }

    public readonly Assembler A = new(64);

    /// <summary>Whether the host has LAHF/SAHF in 64-bit mode (CPUID 80000001H:ECX bit 0; every x86-64 since 2005).</summary>
    public static readonly bool HasLahf = System.Runtime.Intrinsics.X86.X86Base.IsSupported
        && (System.Runtime.Intrinsics.X86.X86Base.CpuId(unchecked((int)0x80000001), 0).Ecx & 1) != 0;

    public static AssemblerRegister64 Q(int r) => R64[r];

    /// <summary>The 32-bit form of host register <paramref name="r"/>.</summary>
    public static AssemblerRegister32 R32Of(int r) => R32[r];

    /// <summary>A memory operand of <paramref name="size"/> bytes at [<paramref name="baseReg"/> + <paramref name="disp"/>].</summary>
    public static AssemblerMemoryOperand Mem(int size, int baseReg, int disp) => size switch
    {
        1 => __byte_ptr[R64[baseReg] + disp],
        2 => __word_ptr[R64[baseReg] + disp],
        4 => __dword_ptr[R64[baseReg] + disp],
        _ => __qword_ptr[R64[baseReg] + disp],
    };

    /// <summary>Loads <paramref name="size"/> bytes into <paramref name="r"/>, zero-extended to 64 bits.</summary>
    public void LoadZx(int r, int size, AssemblerMemoryOperand m)
    {
        switch (size)
        {
            case 1: A.movzx(R32[r], m); break;
            case 2: A.movzx(R32[r], m); break;
            case 4: A.mov(R32[r], m); break;
            default: A.mov(R64[r], m); break;
        }
    }

    /// <summary>Loads <paramref name="size"/> bytes into <paramref name="r"/>, sign-extended to 64 bits.</summary>
    public void LoadSx(int r, int size, AssemblerMemoryOperand m)
    {
        switch (size)
        {
            case 1: A.movsx(R64[r], m); break;
            case 2: A.movsx(R64[r], m); break;
            case 4: A.movsxd(R64[r], m); break;
            default: A.mov(R64[r], m); break;
        }
    }

    /// <summary>Stores the low <paramref name="size"/> bytes of <paramref name="r"/>.</summary>
    public void Store(int size, AssemblerMemoryOperand m, int r)
    {
        switch (size)
        {
            case 1: A.mov(m, R8[r]); break;
            case 2: A.mov(m, R16[r]); break;
            case 4: A.mov(m, R32[r]); break;
            default: A.mov(m, R64[r]); break;
        }
    }

    /// <summary>r = imm (64-bit, shortest form).</summary>
    public void MovImm(int r, ulong imm)
    {
        if (imm <= uint.MaxValue) A.mov(R32[r], (uint)imm);
        else if ((long)imm >= int.MinValue && (long)imm < 0) A.mov(R64[r], (int)(long)imm);
        else A.mov(R64[r], imm);
    }

    /// <summary>d (op)= imm (sign-extended for 64 bits) at 4 or 8 bytes (host flags as the instruction defines them).</summary>
    public void AluImm(Op op, int size, int d, int imm)
    {
        if (size == 1)
        {
            AssemblerRegister8 b = R8[d];
            switch (op)
            {
                case Op.Add: A.add(b, (sbyte)imm); break;
                case Op.Or: A.or(b, (sbyte)imm); break;
                case Op.And: A.and(b, (sbyte)imm); break;
                case Op.Sub: A.sub(b, (sbyte)imm); break;
                case Op.Xor: A.xor(b, (sbyte)imm); break;
                case Op.Cmp: A.cmp(b, (sbyte)imm); break;
                case Op.Test: A.test(b, (sbyte)imm); break;
                default: throw new InvalidOperationException(op.ToString());
            }
            return;
        }
        if (size == 2)
        {
            AssemblerRegister16 w = R16[d];
            switch (op)
            {
                case Op.Add: A.add(w, (short)imm); break;
                case Op.Or: A.or(w, (short)imm); break;
                case Op.And: A.and(w, (short)imm); break;
                case Op.Sub: A.sub(w, (short)imm); break;
                case Op.Xor: A.xor(w, (short)imm); break;
                case Op.Cmp: A.cmp(w, (short)imm); break;
                case Op.Test: A.test(w, (short)imm); break;
                default: throw new InvalidOperationException(op.ToString());
            }
            return;
        }
        if (size == 4)
        {
            AssemblerRegister32 r = R32[d];
            switch (op)
            {
                case Op.Add: A.add(r, imm); break;
                case Op.Or: A.or(r, imm); break;
                case Op.And: A.and(r, imm); break;
                case Op.Sub: A.sub(r, imm); break;
                case Op.Xor: A.xor(r, imm); break;
                case Op.Cmp: A.cmp(r, imm); break;
                case Op.Test: A.test(r, imm); break;
                default: throw new InvalidOperationException(op.ToString());
            }
            return;
        }
        AssemblerRegister64 q = R64[d];
        switch (op)
        {
            case Op.Add: A.add(q, imm); break;
            case Op.Or: A.or(q, imm); break;
            case Op.And: A.and(q, imm); break;
            case Op.Sub: A.sub(q, imm); break;
            case Op.Xor: A.xor(q, imm); break;
            case Op.Cmp: A.cmp(q, imm); break;
            case Op.Test: A.test(q, imm); break;
            default: throw new InvalidOperationException(op.ToString());
        }
    }

    /// <summary>d (op)= s at <paramref name="size"/> bytes (host flags as the instruction defines them).</summary>
    public void Alu(Op op, int size, int d, int s)
    {
        switch (size)
        {
            case 1: Alu8(op, R8[d], R8[s]); break;
            case 2: Alu16(op, R16[d], R16[s]); break;
            case 4: Alu32(op, R32[d], R32[s]); break;
            default: Alu64(op, R64[d], R64[s]); break;
        }
    }

    private void Alu8(Op op, AssemblerRegister8 d, AssemblerRegister8 s)
    {
        switch (op)
        {
            case Op.Add: A.add(d, s); break;
            case Op.Adc: A.adc(d, s); break;
            case Op.Sbb: A.sbb(d, s); break;
            case Op.Or: A.or(d, s); break;
            case Op.And: A.and(d, s); break;
            case Op.Sub: A.sub(d, s); break;
            case Op.Xor: A.xor(d, s); break;
            case Op.Cmp: A.cmp(d, s); break;
            case Op.Test: A.test(d, s); break;
            default: throw new InvalidOperationException(op.ToString());
        }
    }

    private void Alu16(Op op, AssemblerRegister16 d, AssemblerRegister16 s)
    {
        switch (op)
        {
            case Op.Add: A.add(d, s); break;
            case Op.Adc: A.adc(d, s); break;
            case Op.Sbb: A.sbb(d, s); break;
            case Op.Or: A.or(d, s); break;
            case Op.And: A.and(d, s); break;
            case Op.Sub: A.sub(d, s); break;
            case Op.Xor: A.xor(d, s); break;
            case Op.Cmp: A.cmp(d, s); break;
            case Op.Test: A.test(d, s); break;
            case Op.Imul: A.imul(d, s); break;
            default: throw new InvalidOperationException(op.ToString());
        }
    }

    private void Alu32(Op op, AssemblerRegister32 d, AssemblerRegister32 s)
    {
        switch (op)
        {
            case Op.Add: A.add(d, s); break;
            case Op.Adc: A.adc(d, s); break;
            case Op.Sbb: A.sbb(d, s); break;
            case Op.Or: A.or(d, s); break;
            case Op.And: A.and(d, s); break;
            case Op.Sub: A.sub(d, s); break;
            case Op.Xor: A.xor(d, s); break;
            case Op.Cmp: A.cmp(d, s); break;
            case Op.Test: A.test(d, s); break;
            case Op.Imul: A.imul(d, s); break;
            default: throw new InvalidOperationException(op.ToString());
        }
    }

    private void Alu64(Op op, AssemblerRegister64 d, AssemblerRegister64 s)
    {
        switch (op)
        {
            case Op.Add: A.add(d, s); break;
            case Op.Adc: A.adc(d, s); break;
            case Op.Sbb: A.sbb(d, s); break;
            case Op.Or: A.or(d, s); break;
            case Op.And: A.and(d, s); break;
            case Op.Sub: A.sub(d, s); break;
            case Op.Xor: A.xor(d, s); break;
            case Op.Cmp: A.cmp(d, s); break;
            case Op.Test: A.test(d, s); break;
            case Op.Imul: A.imul(d, s); break;
            default: throw new InvalidOperationException(op.ToString());
        }
    }

    /// <summary>Shift of <paramref name="r"/> (4 or 8 bytes) by an immediate count, or by CL when <paramref name="count"/> is negative.</summary>
    public void Shift(Op op, int size, int r, int count)
    {
        if (size == 8)
        {
            AssemblerRegister64 d = R64[r];
            if (count < 0)
            {
                if (op == Op.Shl) A.shl(d, cl); else if (op == Op.Shr) A.shr(d, cl); else A.sar(d, cl);
            }
            else
            {
                if (op == Op.Shl) A.shl(d, (byte)count); else if (op == Op.Shr) A.shr(d, (byte)count); else A.sar(d, (byte)count);
            }
        }
        else
        {
            AssemblerRegister32 d = R32[r];
            if (count < 0)
            {
                if (op == Op.Shl) A.shl(d, cl); else if (op == Op.Shr) A.shr(d, cl); else A.sar(d, cl);
            }
            else
            {
                if (op == Op.Shl) A.shl(d, (byte)count); else if (op == Op.Shr) A.shr(d, (byte)count); else A.sar(d, (byte)count);
            }
        }
    }

    /// <summary>INC (or DEC) of <paramref name="r"/> at <paramref name="size"/> bytes (CF kept).</summary>
    public void IncDec(bool inc, int size, int r)
    {
        switch (size)
        {
            case 1: if (inc) A.inc(R8[r]); else A.dec(R8[r]); break;
            case 2: if (inc) A.inc(R16[r]); else A.dec(R16[r]); break;
            case 4: if (inc) A.inc(R32[r]); else A.dec(R32[r]); break;
            default: if (inc) A.inc(R64[r]); else A.dec(R64[r]); break;
        }
    }

    /// <summary>Jumps to <paramref name="target"/> when condition code <paramref name="cc"/> (0 O .. 15 G) holds in host flags.</summary>
    public void Jcc(int cc, Label target)
    {
        switch (cc)
        {
            case 0: A.jo(target); break;
            case 1: A.jno(target); break;
            case 2: A.jb(target); break;
            case 3: A.jae(target); break;
            case 4: A.je(target); break;
            case 5: A.jne(target); break;
            case 6: A.jbe(target); break;
            case 7: A.ja(target); break;
            case 8: A.js(target); break;
            case 9: A.jns(target); break;
            case 10: A.jp(target); break;
            case 11: A.jnp(target); break;
            case 12: A.jl(target); break;
            case 13: A.jge(target); break;
            case 14: A.jle(target); break;
            default: A.jg(target); break;
        }
    }

    /// <summary>Iced register of host register <paramref name="r"/> at <paramref name="size"/> bytes.</summary>
    private static Register IcedRegister(int r, int size) => size switch
    {
        1 => r < 4 ? Register.AL + r : r < 8 ? Register.SPL + (r - 4) : Register.R8L + (r - 8),
        2 => Register.AX + r,
        4 => Register.EAX + r,
        _ => Register.RAX + r,
    };

    /// <summary>SETcc of condition <paramref name="cc"/> (0 O .. 15 G) into the low byte of <paramref name="r"/>.</summary>
    public void Setcc(int cc, int r) => A.AddInstruction(Instruction.Create(Code.Seto_rm8 + cc, IcedRegister(r, 1)));

    /// <summary>CMOVcc <paramref name="d"/>, <paramref name="s"/> at <paramref name="size"/> (2, 4, 8) bytes.</summary>
    public void Cmovcc(int cc, int size, int d, int s)
    {
        Code code = Code.Cmovo_r16_rm16 + cc * 3 + (size == 2 ? 0 : size == 4 ? 1 : 2);
        A.AddInstruction(Instruction.Create(code, IcedRegister(d, size), IcedRegister(s, size)));
    }

    /// <summary>MUL (or one-operand IMUL) of rAX by <paramref name="r"/> at 4 or 8 bytes: rDX:rAX = product.</summary>
    public void MulAccumulator(bool signed, int size, int r)
    {
        if (size == 8) { if (signed) A.imul(R64[r]); else A.mul(R64[r]); }
        else { if (signed) A.imul(R32[r]); else A.mul(R32[r]); }
    }

    /// <summary>Assembles everything emitted so far (position-independent: only relative branches between its own labels).</summary>
    public byte[] Assemble()
    {
        var writer = new BufferWriter();
        A.Assemble(writer, 0);
        return writer.ToArray();
    }

    /// <summary>Like <see cref="Assemble()"/>; <paramref name="offset"/> is where <paramref name="label"/> ended up.</summary>
    /// <remarks>Block code: the cached guest registers are rewritten to their host registers (<see cref="GprCache"/>),
    /// then the remaining guest-register reloads are forwarded from host registers (<see cref="GprForwarding"/>).</remarks>
    /// <returns>Null when <paramref name="cache"/> (see <see cref="GprCache"/>) cannot be applied to the code.</returns>
    public byte[]? Assemble(Label label, out int offset, ReadOnlySpan<Register> cache)
    {
        offset = 0;
        Instruction[] code = [.. A.Instructions];
        if (!GprCache.Apply(code, cache)) return null;
        GprForwarding.Apply(code);
        var writer = new BufferWriter();
        if (!BlockEncoder.TryEncode(64, new InstructionBlock(writer, code, 0), out string? error, out BlockEncoderResult result,
                BlockEncoderOptions.ReturnNewInstructionOffsets))
            throw new InvalidOperationException(error);
        offset = (int)result.NewInstructionOffsets[label.InstructionIndex];
        return writer.ToArray();
    }

    private sealed class BufferWriter : CodeWriter
    {
        private readonly List<byte> _bytes = new(512);
        public override void WriteByte(byte value) => _bytes.Add(value);
        public byte[] ToArray() => _bytes.ToArray();
    }
}
