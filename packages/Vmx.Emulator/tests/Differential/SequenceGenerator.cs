using Iced.Intel;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>What a generated sequence may contain.</summary>
[Flags]
internal enum InstructionMix
{
    Integer = 1,
    Sse = 2,
    All = Integer | Sse,
    /// <summary>x87 instructions (with some integer ones between them).</summary>
    X87 = 4,
    /// <summary>MMX forms and EMMS.</summary>
    Mmx = 8,
    /// <summary>BMI1, BMI2, CRC32, POPCNT, LZCNT/TZCNT, MOVBE.</summary>
    Bits = 16,
    /// <summary>SSE3, SSSE3, SSE4.1, SSE4.2 (XMM forms).</summary>
    Sse4 = 32,
}

/// <summary>
/// Generates random instruction sequences that are safe to run natively in user mode and fully
/// determined by their initial state: memory operands only through R15 (scratch base), R14 (a small
/// index) or RSP (scratch stack); branches only forward inside the sequence (or loops with a bounded
/// counter); divisions with operands set just before them so #DE can be predicted and avoided; flags
/// read only when every flag read is defined (<see cref="UndefinedFlags"/>).
/// Every case is reproducible from its seed.
/// </summary>
internal sealed class SequenceGenerator
{
    private const int ScratchLow = -0x1000;        // scratch area relative to R15
    private const int ScratchHigh = 0x3000;
    private const int MaxIndex = 0x80;             // R14 is 16 * [0, 8]
    private const int MaxStackDepth = 0x400;

    /// <summary>GPRs the sequence may write: all but RSP (stack), R14 (index) and R15 (scratch base).</summary>
    private static readonly int[] Writable = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13];

    private static readonly Code[] IntegerBodyCodes =
        InstructionForms.IntegerCodes.Where(c => !c.ToOpCode().IsStackInstruction).ToArray();

    private static readonly Code[] JccCodes =
    [
        Code.Jo_rel8_64, Code.Jno_rel8_64, Code.Jb_rel8_64, Code.Jae_rel8_64, Code.Je_rel8_64, Code.Jne_rel8_64,
        Code.Jbe_rel8_64, Code.Ja_rel8_64, Code.Js_rel8_64, Code.Jns_rel8_64, Code.Jp_rel8_64, Code.Jnp_rel8_64,
        Code.Jl_rel8_64, Code.Jge_rel8_64, Code.Jle_rel8_64, Code.Jg_rel8_64,
        Code.Jo_rel32_64, Code.Jne_rel32_64, Code.Jl_rel32_64, Code.Ja_rel32_64, Code.Jmp_rel8_64, Code.Jmp_rel32_64,
    ];

    private readonly ulong _base;
    private readonly ulong _codeAddress;
    private SplitMix _r = new(0);
    private readonly List<Instruction> _out = new(64);
    private ulong _undefined;
    private int _depth;
    private ulong _nextId;
    private ulong _pending;
    private bool _rcxLocked;
    private bool _rbpLocked;
    private bool _returnAddressLive;
    private CpuSnapshot _init = new();
    private readonly Encoder _probe;
    private readonly LabelAssembler _assembler = new();

    public SequenceGenerator(ulong arenaBase)
    {
        _base = arenaBase;
        _codeAddress = arenaBase + TestArena.CodeOffset;
        _probe = Encoder.Create(64, new ByteWriter());
    }

    /// <summary>Builds the case for <paramref name="seed"/>: 1..<paramref name="maxLength"/> top-level items.</summary>
    public DifferentialCase Generate(int seed, InstructionMix mix, int maxLength = 10)
    {
        _r = new SplitMix(seed);
        _out.Clear();
        _undefined = 0;
        _depth = 0;
        _nextId = 0x1000;
        _pending = 0;
        _rcxLocked = false;
        _rbpLocked = false;
        _returnAddressLive = false;
        _init = RandomState();

        int n = 1 + _r.Next(maxLength);
        for (int i = 0; i < n; i++)
        {
            for (int attempt = 0; attempt < 20; attempt++)
            {
                if (Item(mix))
                    break;
            }
        }
        if (_pending != 0)
            Emit(Instruction.Create(Code.Nopd));
        return new DifferentialCase
        {
            Seed = seed,
            CodeAddress = _codeAddress,
            Code = _assembler.Assemble(_out, _codeAddress) ?? throw new InvalidOperationException($"seed {seed}: a short branch is out of range"),
            Initial = _init,
            UndefinedFlags = _undefined,
        };
    }

    private bool Item(InstructionMix mix)
    {
        bool sse = (mix & InstructionMix.Sse) != 0;
        bool integer = (mix & InstructionMix.Integer) != 0;
        int roll = _r.Next(100);
        if ((mix & InstructionMix.X87) != 0 && (roll < 85 || !integer))
            return _r.Next(12) == 0 ? X87Template() : Generic(Pick(InstructionForms.X87Codes));
        if ((mix & InstructionMix.Sse4) != 0 && (roll < 70 || !integer))
            return Generic(Pick(InstructionForms.Sse4Codes));
        if ((mix & InstructionMix.Bits) != 0 && (roll < 60 || !integer))
            return Generic(Pick(InstructionForms.BitCodes));
        if ((mix & InstructionMix.Mmx) != 0 && (roll < 85 || !integer))
            return _r.Next(15) == 0 ? Generic(Code.Emms) : Generic(Pick(InstructionForms.MmxCodes));
        if (sse && (!integer || roll < 45))
            return _r.Next(30) == 0 ? Ldmxcsr() : Generic(Pick(InstructionForms.SseCodes));
        if (!integer)
            return false;
        return roll switch
        {
            < 62 => Generic(Pick(InstructionForms.IntegerCodes)),
            < 67 => Division(),
            < 74 => StringInstruction(),
            < 80 => ForwardBranch(),
            < 84 => Loop(),
            < 88 => CallReturn(),
            < 91 => EnterLeave(),
            < 94 => PopFlags(),
            < 96 => Xlat(),
            _ => Generic(Pick(InstructionForms.IntegerCodes)),
        };
    }

    // ---- emission and bookkeeping ----

    private ulong NewLabel() => _nextId++;

    private void Emit(Instruction instruction)
    {
        if (_pending != 0)
        {
            instruction.IP = _pending;
            _pending = 0;
        }
        else
        {
            instruction.IP = NewLabel();
        }
        _out.Add(instruction);
    }

    /// <summary>Binds <paramref name="label"/> to the next emitted instruction (joining any label already pending).</summary>
    private void BindNext(ulong label)
    {
        if (_pending != 0)
            Emit(Instruction.Create(Code.Nopd));
        _pending = label;
    }

    private bool Encodable(in Instruction instruction) => _probe.TryEncode(instruction, _codeAddress, out _, out _);

    /// <summary>Makes every flag in <paramref name="reads"/> defined before an instruction that reads it.</summary>
    private void DefineFlags(ulong reads)
    {
        if ((reads & _undefined) == 0)
            return;
        var a = Gpr(8, _r.Next(Writable.Length));
        var b = Gpr(8, _r.Next(Writable.Length));
        Emit(Instruction.Create(Code.Cmp_rm64_r64, a, b));
        _undefined = 0;
    }

    private void Retire(in Instruction instruction, int count)
    {
        if (UndefinedFlags.LeavesFlagsUnchanged(instruction, count))
            return;
        _undefined = (_undefined & ~UndefinedFlags.FromIced(instruction.RflagsModified)) | UndefinedFlags.For(instruction, count);
    }

    private Code Pick(Code[] codes) => codes[_r.Next(codes.Length)];

    // ---- operands ----

    private int WritableGpr()
    {
        while (true)
        {
            int g = Writable[_r.Next(Writable.Length)];
            if (!(_rcxLocked && g == 1) && !(_rbpLocked && g == 5))
                return g;
        }
    }

    private static Register Gpr(int bytes, int index) => bytes switch
    {
        1 => index < 4 ? Register.AL + index : index < 8 ? Register.SPL + (index - 4) : Register.R8L + (index - 8),
        2 => Register.AX + index,
        4 => Register.EAX + index,
        _ => Register.RAX + index,
    };

    private Register RandomGpr(int bytes)
    {
        int g = WritableGpr();
        if (bytes == 1 && g < 4 && _r.Next(5) == 0)
            return Register.AH + g;
        return Gpr(bytes, g);
    }

    private static Register Xmm(int index) => Register.XMM0 + index;

    /// <summary>A memory operand of <paramref name="size"/> bytes inside the scratch area or the scratch stack,
    /// aligned to 16 when <paramref name="aligned"/>, often misaligned or crossing a page otherwise.</summary>
    private MemoryOperand Memory(int size, bool aligned)
    {
        int kind = _r.Next(100);
        if (!aligned && kind < 12 && !_returnAddressLive)
        {
            // [rsp + disp]: RSP is initial - depth, disp keeps it inside the compared stack pages.
            int disp = _r.Next(0x200);
            return new MemoryOperand(Register.RSP, disp, disp == 0 ? 0 : 1);
        }
        bool indexed = kind < 30;
        int high = ScratchHigh - size - (indexed ? MaxIndex * 8 : 0);
        int d;
        int pick = _r.Next(10);
        if (aligned)
            d = (ScratchLow + _r.Next(high - ScratchLow)) & ~15;
        else if (pick < 3)
            d = 0x1000 * _r.Next(3) - 1 - _r.Next(Math.Max(1, size - 1)); // crosses a page boundary
        else if (pick < 5)
            d = ((ScratchLow + _r.Next(high - ScratchLow)) & ~15) + _r.Next(16); // misaligned near a line
        else
            d = ScratchLow + _r.Next(high - ScratchLow);
        if (indexed)
        {
            int scale = 1 << _r.Next(4);
            return new MemoryOperand(Register.R15, Register.R14, scale, d, d == 0 ? 0 : 1);
        }
        return new MemoryOperand(Register.R15, d, d == 0 ? 0 : 1);
    }

    private long Interesting(int bytes)
    {
        int bits = bytes * 8;
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        ulong v = _r.Next(10) switch
        {
            0 => 0,
            1 => 1,
            2 => mask,
            3 => 1UL << (bits - 1),
            4 => (1UL << (bits - 1)) - 1,
            5 => (ulong)_r.Next(16),
            6 => mask - (ulong)_r.Next(16),
            7 => 1UL << _r.Next(bits),
            _ => (ulong)_r.NextInt64() ^ ((ulong)_r.Next() << 40),
        };
        v &= mask;
        // Sign-extend to the immediate's width as Iced expects for signed immediates.
        return bits == 64 ? (long)v : ((long)(v << (64 - bits))) >> (64 - bits);
    }

    // ---- generic forms from Iced's opcode tables ----

    private bool Generic(Code code)
    {
        var op = code.ToOpCode();
        var ins = new Instruction { Code = code };
        var setup = new List<Instruction>(2);
        int count = -1;
        int memSize = op.MemorySize.GetSize();
        Mnemonic m = code.Mnemonic();
        // Legacy SSE 128-bit memory operands must be 16-byte aligned except for the unaligned moves (#GP otherwise,
        // SDM Vol. 1 §10.4.1.1); CMPXCHG16B: "the destination operand must be 16-byte aligned".
        bool aligned = (memSize == 16 && m is not (Mnemonic.Movups or Mnemonic.Movupd or Mnemonic.Movdqu or Mnemonic.Lddqu
                           or Mnemonic.Pcmpestri or Mnemonic.Pcmpestrm or Mnemonic.Pcmpistri or Mnemonic.Pcmpistrm
                           or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64))
                       || m == Mnemonic.Cmpxchg16b;
        int shiftBits = 0;

        for (int i = 0; i < op.OpCount; i++)
        {
            var kind = op.GetOpKind(i);
            switch (kind)
            {
                case OpCodeOperandKind.r8_or_mem:
                case OpCodeOperandKind.r16_or_mem:
                case OpCodeOperandKind.r32_or_mem:
                case OpCodeOperandKind.r64_or_mem:
                case OpCodeOperandKind.xmm_or_mem:
                    if (_r.Next(100) < 40)
                        SetMemory(ref ins, i, memSize, aligned);
                    else if (kind == OpCodeOperandKind.xmm_or_mem)
                        ins.SetOpRegister(i, Xmm(_r.Next(16)));
                    else
                        ins.SetOpRegister(i, RandomGpr(RegBytes(kind)));
                    if (ins.GetOpKind(i) != OpKind.Memory)
                        ins.SetOpKind(i, OpKind.Register);
                    break;
                case OpCodeOperandKind.mem:
                    SetMemory(ref ins, i, memSize, aligned);
                    break;
                case OpCodeOperandKind.r8_reg:
                case OpCodeOperandKind.r8_opcode:
                case OpCodeOperandKind.r16_reg:
                case OpCodeOperandKind.r16_opcode:
                case OpCodeOperandKind.r16_rm:
                case OpCodeOperandKind.r32_reg:
                case OpCodeOperandKind.r32_opcode:
                case OpCodeOperandKind.r32_rm:
                case OpCodeOperandKind.r64_reg:
                case OpCodeOperandKind.r64_opcode:
                case OpCodeOperandKind.r64_rm:
                case OpCodeOperandKind.r32_vvvv:
                case OpCodeOperandKind.r64_vvvv:
                    ins.SetOpKind(i, OpKind.Register);
                    ins.SetOpRegister(i, RandomGpr(RegBytes(kind)));
                    break;
                case OpCodeOperandKind.xmm_reg:
                case OpCodeOperandKind.xmm_rm:
                    ins.SetOpKind(i, OpKind.Register);
                    ins.SetOpRegister(i, Xmm(_r.Next(16)));
                    break;
                case OpCodeOperandKind.st0:
                    ins.SetOpKind(i, OpKind.Register);
                    ins.SetOpRegister(i, Register.ST0);
                    break;
                case OpCodeOperandKind.sti_opcode:
                    ins.SetOpKind(i, OpKind.Register);
                    ins.SetOpRegister(i, Register.ST0 + _r.Next(8));
                    break;
                case OpCodeOperandKind.mm_reg:
                case OpCodeOperandKind.mm_rm:
                    ins.SetOpKind(i, OpKind.Register);
                    ins.SetOpRegister(i, Register.MM0 + _r.Next(8));
                    break;
                case OpCodeOperandKind.mm_or_mem:
                    if (_r.Next(100) < 40)
                        SetMemory(ref ins, i, memSize, aligned: false);
                    else
                    {
                        ins.SetOpKind(i, OpKind.Register);
                        ins.SetOpRegister(i, Register.MM0 + _r.Next(8));
                    }
                    break;
                case OpCodeOperandKind.al:
                case OpCodeOperandKind.ax:
                case OpCodeOperandKind.eax:
                case OpCodeOperandKind.rax:
                    ins.SetOpKind(i, OpKind.Register);
                    ins.SetOpRegister(i, kind switch
                    {
                        OpCodeOperandKind.al => Register.AL,
                        OpCodeOperandKind.ax => Register.AX,
                        OpCodeOperandKind.eax => Register.EAX,
                        _ => Register.RAX,
                    });
                    break;
                case OpCodeOperandKind.cl:
                    if (_rcxLocked)
                        return false;
                    ins.SetOpKind(i, OpKind.Register);
                    ins.SetOpRegister(i, Register.CL);
                    count = ShiftCount(m);
                    setup.Add(Instruction.Create(Code.Mov_r8_imm8, Register.CL, (uint)count));
                    break;
                case OpCodeOperandKind.imm8_const_1:
                    ins.SetOpKind(i, OpKind.Immediate8);
                    ins.Immediate8 = 1;
                    count = 1;
                    break;
                case OpCodeOperandKind.imm8:
                {
                    ins.SetOpKind(i, OpKind.Immediate8);
                    int v;
                    if (IsShift(m))
                        count = v = ShiftCount(m);
                    else if (m is Mnemonic.Palignr)
                        v = _r.Next(4) == 0 ? _r.Next(256) : _r.Next(32);
                    else if (m is Mnemonic.Cmpss or Mnemonic.Cmpsd or Mnemonic.Cmpps or Mnemonic.Cmppd)
                        v = _r.Next(8);
                    else if (m is Mnemonic.Psllw or Mnemonic.Pslld or Mnemonic.Psllq or Mnemonic.Psrlw or Mnemonic.Psrld
                             or Mnemonic.Psrlq or Mnemonic.Psraw or Mnemonic.Psrad or Mnemonic.Pslldq or Mnemonic.Psrldq)
                        v = _r.Next(4) == 0 ? _r.Next(256) : _r.Next(20);
                    else
                        v = _r.Next(256);
                    ins.Immediate8 = (byte)v;
                    break;
                }
                case OpCodeOperandKind.imm8sex16:
                case OpCodeOperandKind.imm8sex32:
                case OpCodeOperandKind.imm8sex64:
                    ins.SetOpKind(i, kind switch
                    {
                        OpCodeOperandKind.imm8sex16 => OpKind.Immediate8to16,
                        OpCodeOperandKind.imm8sex32 => OpKind.Immediate8to32,
                        _ => OpKind.Immediate8to64,
                    });
                    ins.SetImmediate(i, Interesting(1));
                    break;
                case OpCodeOperandKind.imm16:
                    ins.SetOpKind(i, OpKind.Immediate16);
                    ins.SetImmediate(i, (ushort)Interesting(2));
                    break;
                case OpCodeOperandKind.imm32:
                    ins.SetOpKind(i, OpKind.Immediate32);
                    ins.SetImmediate(i, (uint)Interesting(4));
                    break;
                case OpCodeOperandKind.imm32sex64:
                    ins.SetOpKind(i, OpKind.Immediate32to64);
                    ins.SetImmediate(i, Interesting(4));
                    break;
                case OpCodeOperandKind.imm64:
                    ins.SetOpKind(i, OpKind.Immediate64);
                    ins.SetImmediate(i, (ulong)Interesting(8));
                    break;
                default:
                    return false;
            }
        }

        if (IsShift(m))
        {
            shiftBits = UndefinedFlags.OperandBits(ins);
            // SHLD/SHRD: "If the count is greater than the operand size, the result is undefined."
            if (m is Mnemonic.Shld or Mnemonic.Shrd && (count & 0x1F) > shiftBits)
                return false;
        }

        // Bit strings: BT* m, r addresses memory at [m + (r >> 3)]; keep the register offset small.
        if (m is Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc && ins.Op0Kind == OpKind.Memory
            && ins.Op1Kind == OpKind.Register)
        {
            if (ins.MemoryBase == Register.RSP)
                return false;
            ins.MemoryIndex = Register.None;
            ins.MemoryIndexScale = 1;
            int d = _r.Next(0x1000);
            ins.MemoryDisplacement64 = (ulong)d;
            ins.MemoryDisplSize = d == 0 ? 0 : 1;
            var reg = ins.Op1Register;
            if (reg is >= Register.AH and <= Register.BH)
                return false;
            int bitOffset = _r.Next(-0x800 * 8, 0x800 * 8);
            int bytes = reg.GetSize();
            setup.Add(bytes switch
            {
                2 => Instruction.Create(Code.Mov_r16_imm16, reg, (uint)(ushort)bitOffset),
                4 => Instruction.Create(Code.Mov_r32_imm32, reg, (uint)bitOffset),
                _ => Instruction.Create(Code.Mov_rm64_imm32, reg, bitOffset),
            });
        }

        // CMPXCHG: half the time make the comparison succeed.
        if (m == Mnemonic.Cmpxchg && _r.Next(2) == 0)
        {
            int bytes = ins.Op1Register.GetSize();
            var acc = Gpr(bytes, 0);
            if (ins.Op0Kind == OpKind.Memory)
                setup.Add(Instruction.Create(MovLoad(bytes), acc, MemoryOf(ins)));
            else if (ins.Op0Register is < Register.AH or > Register.BH)
                setup.Add(Instruction.Create(MovRegReg(bytes), acc, ins.Op0Register));
        }
        if (m is Mnemonic.Cmpxchg8b or Mnemonic.Cmpxchg16b && _r.Next(2) == 0)
        {
            bool wide = m == Mnemonic.Cmpxchg16b;
            var mem = MemoryOf(ins);
            var high = new MemoryOperand(mem.Base, mem.Index, mem.Scale, mem.Displacement + (wide ? 8 : 4), 1);
            setup.Add(Instruction.Create(wide ? Code.Mov_r64_rm64 : Code.Mov_r32_rm32, wide ? Register.RAX : Register.EAX, mem));
            setup.Add(Instruction.Create(wide ? Code.Mov_r64_rm64 : Code.Mov_r32_rm32, wide ? Register.RDX : Register.EDX, high));
        }

        // Now and then read RSP, R14 or R15 (never written) through an operand the instruction only reads.
        if (_r.Next(8) == 0 && !(m is Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc && ins.Op0Kind == OpKind.Memory))
            UseReservedSource(ref ins);

        // The stack must stay inside the compared pages.
        int delta = StackDelta(ins);
        if (Math.Abs(_depth + delta) > MaxStackDepth)
            return false;
        // Instructions that write RCX implicitly cannot sit inside a LOOP body.
        if (_rcxLocked && WritesRcx(ins))
            return false;
        if (ins.HasOpKind(OpKind.Memory) && _r.Next(10) == 0 && op.CanUseLockPrefix && ins.Op0Kind == OpKind.Memory)
            ins.HasLockPrefix = true;
        if (!Encodable(ins))
            return false;
        foreach (var s in setup)
        {
            if (!Encodable(s))
                return false;
        }

        DefineFlags(UndefinedFlags.FromIced(ins.RflagsRead));
        foreach (var s in setup)
            Emit(s);
        Emit(ins);
        Retire(ins, count);
        _depth += delta;
        return true;
    }

    private readonly InstructionInfoFactory _info = new();
    private static readonly int[] Reserved = [4, 14, 15];

    private void UseReservedSource(ref Instruction ins)
    {
        var info = _info.GetInfo(ins);
        for (int i = 0; i < ins.OpCount; i++)
        {
            if (ins.GetOpKind(i) != OpKind.Register || info.GetOpAccess(i) != OpAccess.Read)
                continue;
            var reg = ins.GetOpRegister(i);
            if (!reg.IsGPR() || reg is Register.CL || reg is >= Register.AH and <= Register.BH)
                continue;
            var candidate = Gpr(reg.GetSize(), Reserved[_r.Next(Reserved.Length)]);
            // Implicit operands (AL/AX/EAX/RAX forms) cannot be renamed; the encoder rejects them below.
            ins.SetOpRegister(i, candidate);
            return;
        }
    }

    private static bool IsShift(Mnemonic m) =>
        m is Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar or Mnemonic.Rol or Mnemonic.Ror
            or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shld or Mnemonic.Shrd;

    private int ShiftCount(Mnemonic m) => _r.Next(6) switch
    {
        0 => 0,
        1 => 1,
        2 => _r.Next(256),
        3 => _r.Next(2) == 0 ? 8 : 16,
        4 => 31 + _r.Next(3) * 32 + _r.Next(2),
        _ => _r.Next(m is Mnemonic.Shld or Mnemonic.Shrd ? 16 : 70),
    };

    private static int RegBytes(OpCodeOperandKind kind) => kind switch
    {
        OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode => 1,
        OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r16_reg or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r16_rm => 2,
        OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_opcode or OpCodeOperandKind.r32_rm
            or OpCodeOperandKind.r32_vvvv => 4,
        _ => 8,
    };

    private void SetMemory(ref Instruction ins, int operand, int size, bool aligned)
    {
        var mem = Memory(Math.Max(1, size), aligned);
        ins.SetOpKind(operand, OpKind.Memory);
        ins.MemoryBase = mem.Base;
        ins.MemoryIndex = mem.Index;
        ins.MemoryIndexScale = mem.Scale;
        ins.MemoryDisplacement64 = (ulong)mem.Displacement;
        ins.MemoryDisplSize = mem.DisplSize;
    }

    private static MemoryOperand MemoryOf(in Instruction ins) =>
        new(ins.MemoryBase, ins.MemoryIndex, ins.MemoryIndexScale, (long)ins.MemoryDisplacement64, 1);

    private static Code MovLoad(int bytes) => bytes switch
    {
        1 => Code.Mov_r8_rm8,
        2 => Code.Mov_r16_rm16,
        4 => Code.Mov_r32_rm32,
        _ => Code.Mov_r64_rm64,
    };

    private static Code MovRegReg(int bytes) => MovLoad(bytes);

    private static int StackDelta(in Instruction ins)
    {
        var info = ins.Code.ToOpCode();
        if (!info.IsStackInstruction)
            return 0;
        int size = ins.Code switch
        {
            Code.Pushw_imm8 or Code.Push_imm16 or Code.Push_r16 or Code.Push_rm16 or Code.Pop_r16 or Code.Pop_rm16
                or Code.Pushfw => 2,
            _ => 8,
        };
        return ins.Mnemonic is Mnemonic.Pop ? -size : size;
    }

    private static bool WritesRcx(in Instruction ins)
    {
        for (int i = 0; i < ins.OpCount; i++)
        {
            if (ins.GetOpKind(i) == OpKind.Register && ins.GetOpRegister(i).GetFullRegister() == Register.RCX)
                return true;
        }
        return ins.Mnemonic is Mnemonic.Cpuid;
    }

    // ---- templates ----

    /// <summary>DIV/IDIV with dividend and divisor set just before, chosen so the quotient fits (no #DE natively).</summary>
    private bool Division()
    {
        bool signed = _r.Next(2) == 0;
        int bytes = 1 << _r.Next(4);
        int bits = bytes * 8;
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        ulong divisor, high, low;
        int tries = 0;
        while (true)
        {
            divisor = (ulong)Interesting(bytes) & mask;
            low = (ulong)Interesting(bytes) & mask;
            if (divisor == 0)
                continue;
            if (!signed)
            {
                high = _r.Next(3) switch { 0 => 0, 1 => divisor - 1, _ => (ulong)_r.NextInt64() % divisor };
                break;
            }
            // Signed: dividend is the sign extension of low most of the time, a random high half otherwise.
            high = _r.Next(3) == 0 ? (ulong)Interesting(bytes) & mask : ((low >> (bits - 1)) & 1) != 0 ? mask : 0;
            Int128 dividend = ((Int128)(long)SignExtend(high, bits) << bits) | (Int128)low;
            Int128 d = SignExtend(divisor, bits);
            if (d == -1 && dividend == Int128.MinValue)
                continue; // the only Int128 division that overflows; its quotient does not fit any size either
            Int128 q = dividend / d;
            Int128 min = -((Int128)1 << (bits - 1)), max = ((Int128)1 << (bits - 1)) - 1;
            if (q >= min && q <= max)
                break;
            if (++tries > 20)
                return false;
        }

        if (bytes == 1)
            Emit(Instruction.Create(Code.Mov_r16_imm16, Register.AX, (uint)((high << 8) | low)));
        else
        {
            Emit(MovImm(bytes, 2, high));
            Emit(MovImm(bytes, 0, low));
        }

        Instruction div;
        Code code = (signed, bytes) switch
        {
            (false, 1) => Code.Div_rm8,
            (false, 2) => Code.Div_rm16,
            (false, 4) => Code.Div_rm32,
            (false, _) => Code.Div_rm64,
            (true, 1) => Code.Idiv_rm8,
            (true, 2) => Code.Idiv_rm16,
            (true, 4) => Code.Idiv_rm32,
            (true, _) => Code.Idiv_rm64,
        };
        int reg;
        do
            reg = WritableGpr();
        while (reg is 0 or 2);
        if (_r.Next(3) == 0)
        {
            var mem = Memory(bytes, false);
            Emit(MovImm(8, reg, divisor));
            Emit(Instruction.Create(bytes switch
            {
                1 => Code.Mov_rm8_r8,
                2 => Code.Mov_rm16_r16,
                4 => Code.Mov_rm32_r32,
                _ => Code.Mov_rm64_r64,
            }, mem, Gpr(bytes, reg)));
            div = Instruction.Create(code, mem);
        }
        else
        {
            Emit(MovImm(bytes == 1 ? 8 : bytes, reg, divisor));
            div = Instruction.Create(code, Gpr(bytes, reg));
        }
        Emit(div);
        Retire(div, -1);
        return true;
    }

    private static long SignExtend(ulong v, int bits) => bits == 64 ? (long)v : ((long)(v << (64 - bits))) >> (64 - bits);

    private static Instruction MovImm(int bytes, int reg, ulong value) => bytes switch
    {
        1 => Instruction.Create(Code.Mov_r8_imm8, Gpr(1, reg), (uint)(byte)value),
        2 => Instruction.Create(Code.Mov_r16_imm16, Gpr(2, reg), (uint)(ushort)value),
        4 => Instruction.Create(Code.Mov_r32_imm32, Gpr(4, reg), (uint)value),
        _ => Instruction.Create(Code.Mov_r64_imm64, Gpr(8, reg), value),
    };

    /// <summary>MOVS/CMPS/STOS/LODS/SCAS, 64- or 32-bit addressing, with or without REP/REPE/REPNE, both directions.</summary>
    private bool StringInstruction()
    {
        if (_rcxLocked)
            return false;
        int addressSize = _r.Next(4) == 0 ? 32 : 64;
        int kind = _r.Next(5);
        int size = 1 << _r.Next(4);
        var rep = _r.Next(4) switch { 0 => RepPrefixKind.None, 1 => RepPrefixKind.Repne, _ => RepPrefixKind.Repe };
        bool repeated = rep != RepPrefixKind.None;
        int n = _r.Next(4) == 0 ? 0 : _r.Next(1, 17);
        Instruction ins = StringInstruction(kind, size, addressSize, rep);
        Emit(Instruction.Create(Code.Lea_r64_m, Register.RSI, new MemoryOperand(Register.R15, 0x200 + _r.Next(0x1C00), 1)));
        Emit(Instruction.Create(Code.Lea_r64_m, Register.RDI, new MemoryOperand(Register.R15, 0x200 + _r.Next(0x1C00), 1)));
        if (repeated)
            Emit(Instruction.Create(Code.Mov_r32_imm32, Register.ECX, (uint)n));
        if (_r.Next(4) == 0)
            Emit(Instruction.Create(_r.Next(2) == 0 ? Code.Std : Code.Cld));
        Emit(ins);
        bool writesFlags = kind is 1 or 4;
        // A REP with RCX = 0 executes no iteration and changes no flag.
        if (writesFlags && !(repeated && n == 0))
            _undefined &= ~RflagsBits.Arithmetic;
        return true;
    }

    /// <summary>Jcc/JMP forward over a short body.</summary>
    private bool ForwardBranch()
    {
        Code code = Pick(JccCodes);
        var target = NewLabel();
        var branch = Instruction.CreateBranch(code, target);
        DefineFlags(UndefinedFlags.FromIced(branch.RflagsRead));
        Emit(branch);
        ulong before = _undefined;
        Body(1 + _r.Next(3));
        _undefined |= before;
        BindNext(target);
        return true;
    }

    private void Body(int n)
    {
        for (int i = 0; i < n; i++)
        {
            for (int attempt = 0; attempt < 20 && !Generic(Pick(IntegerBodyCodes)); attempt++)
            {
            }
        }
    }

    /// <summary>LOOP/LOOPE/LOOPNE back over a body with a small count, or JRCXZ/JECXZ forward.</summary>
    private bool Loop()
    {
        if (_rcxLocked)
            return false;
        int kind = _r.Next(8);
        if (kind >= 6)
        {
            if (_r.Next(3) == 0)
                Emit(Instruction.Create(Code.Mov_r32_imm32, Register.ECX, (uint)(_r.Next(2) == 0 ? 0 : 0x1_0000)));
            var target = NewLabel();
            Emit(Instruction.CreateBranch(kind == 6 ? Code.Jrcxz_rel8_64 : Code.Jecxz_rel8_64, target));
            ulong before = _undefined;
            Body(1 + _r.Next(2));
            _undefined |= before;
            BindNext(target);
            return true;
        }
        Code code = kind switch
        {
            0 => Code.Loop_rel8_64_RCX,
            1 => Code.Loop_rel8_64_ECX,
            2 => Code.Loope_rel8_64_RCX,
            3 => Code.Loope_rel8_64_ECX,
            4 => Code.Loopne_rel8_64_RCX,
            _ => Code.Loopne_rel8_64_ECX,
        };
        Emit(Instruction.Create(Code.Mov_r32_imm32, Register.ECX, (uint)_r.Next(1, 5)));
        var top = NewLabel();
        BindNext(top);
        _rcxLocked = true;
        Body(1 + _r.Next(2));
        _rcxLocked = false;
        // The back edge carries the body's flag state to the top: leave every flag defined, so the top of
        // the second iteration sees no more undefined flags than the first.
        DefineFlags(RflagsBits.Arithmetic);
        var loop = Instruction.CreateBranch(code, top);
        DefineFlags(UndefinedFlags.FromIced(loop.RflagsRead));
        Emit(loop);
        return true;
    }

    /// <summary>CALL (direct or through a register) into a local body ending in RET/RET imm16.</summary>
    private bool CallReturn()
    {
        int retImm = _r.Next(3) switch { 0 => 0, 1 => 8, _ => -1 };
        int delta = retImm > 0 ? -retImm : 0;
        if (Math.Abs(_depth + delta) > MaxStackDepth - 16)
            return false;
        var body = NewLabel();
        var after = NewLabel();
        if (_r.Next(3) == 0)
        {
            var reg = Gpr(8, WritableGpr());
            Emit(Instruction.Create(Code.Lea_r64_m, reg, new MemoryOperand(Register.RIP, (long)body)));
            Emit(Instruction.Create(Code.Call_rm64, reg));
        }
        else
        {
            Emit(Instruction.CreateBranch(Code.Call_rel32_64, body));
        }
        Emit(Instruction.CreateBranch(Code.Jmp_rel32_64, after));
        BindNext(body);
        _depth += 8;
        _returnAddressLive = true; // the body must not overwrite its return address through [rsp+disp]
        Body(_r.Next(3));
        _returnAddressLive = false;
        _depth -= 8;
        Emit(retImm < 0 ? Instruction.Create(Code.Retnq) : Instruction.Create(Code.Retnq_imm16, (uint)retImm));
        _depth += delta;
        BindNext(after);
        return true;
    }

    /// <summary>ENTER size, level with RBP pointing into the stack, a body, LEAVE (64- or 16-bit operand size).</summary>
    private bool EnterLeave()
    {
        bool word = _r.Next(4) == 0;
        int level = _r.Next(5) == 0 ? _r.Next(1, 4) : _r.Next(2) == 0 ? 0 : 1;
        int size = _r.Next(5) * 8 + (word ? 2 * _r.Next(2) : 0);
        int extra = 8 * (level + 2) + size;
        if (_depth + extra > MaxStackDepth)
            return false;
        Emit(Instruction.Create(Code.Lea_r64_m, Register.RBP, new MemoryOperand(Register.RSP, 8 * _r.Next(-4, 9), 1)));
        Emit(Instruction.Create(word ? Code.Enterw_imm16_imm8 : Code.Enterq_imm16_imm8, (uint)size, (uint)level));
        _depth += extra;
        _rbpLocked = true;
        Body(_r.Next(3));
        _rbpLocked = false;
        _depth -= extra;
        Emit(Instruction.Create(word ? Code.Leavew : Code.Leaveq));
        return true;
    }

    /// <summary>PUSH imm; POPF/POPFQ with only status flags and DF varying (IF=1, IOPL=0, no TF/AC/NT).</summary>
    private bool PopFlags()
    {
        uint value = 0x202 | (uint)(_r.Next() & (int)(RflagsBits.Arithmetic | (_r.Next(4) == 0 ? RflagsBits.DF : 0)));
        if (_r.Next(3) == 0)
        {
            Emit(Instruction.Create(Code.Push_imm16, value));
            Emit(Instruction.Create(Code.Popfw));
        }
        else
        {
            Emit(Instruction.Create(Code.Pushq_imm32, (int)value));
            Emit(Instruction.Create(Code.Popfq));
        }
        _undefined = 0;
        return true;
    }

    /// <summary>XLAT with RBX in the scratch area.</summary>
    private bool Xlat()
    {
        Emit(Instruction.Create(Code.Lea_r64_m, Register.RBX, new MemoryOperand(Register.R15, _r.Next(0x2000), 1)));
        Emit(Instruction.Create(Code.Xlat_m8, new MemoryOperand(Register.RBX, Register.AL)));
        return true;
    }

    /// <summary>LDMXCSR of a value with every exception masked and random RC, FTZ, DAZ and sticky flags.</summary>
    private bool Ldmxcsr()
    {
        uint value = 0x1F80u | (uint)(_r.Next(4) << 13) | (uint)(_r.Next(2) << 15) | (uint)(_r.Next(2) << 6) | (uint)_r.Next(64);
        var mem = Memory(4, false);
        Emit(Instruction.Create(Code.Mov_rm32_imm32, mem, value));
        Emit(Instruction.Create(Code.Ldmxcsr_m32, mem));
        return true;
    }

    // ---- initial state ----

    /// <summary>A random initial state for directed cases (same distribution as generated ones).</summary>
    public CpuSnapshot InitialState(int seed)
    {
        _r = new SplitMix(seed);
        return RandomState();
    }

    /// <summary>Assembles directed <paramref name="instructions"/> (label ids as IPs, like generated ones).</summary>
    public byte[] Assemble(List<Instruction> instructions)
    {
        var list = new List<Instruction>(instructions.Count);
        ulong id = 0x100000;
        foreach (var ins in instructions)
        {
            var copy = ins;
            if (copy.IP == 0)
                copy.IP = id++;
            list.Add(copy);
        }
        return _assembler.Assemble(list, _codeAddress) ?? throw new InvalidOperationException("branch out of range");
    }

    private CpuSnapshot RandomState()
    {
        var s = new CpuSnapshot();
        for (int i = 0; i < 16; i++)
            s.Gpr[i] = (ulong)Interesting(8);
        s.Gpr[4] = _base + TestArena.InitialRspOffset;
        s.Gpr[14] = (ulong)(16 * _r.Next(MaxIndex / 16 + 1));
        s.Gpr[15] = _base + TestArena.ScratchBaseOffset;
        s.Rflags = 0x202 | (ulong)(_r.Next() & (int)RflagsBits.Arithmetic) | (_r.Next(4) == 0 ? RflagsBits.DF : 0);
        s.Mxcsr = 0x1F80u | (uint)(_r.Next(4) << 13) | (_r.Next(4) == 0 ? 0x8040u : 0) | (uint)(_r.Next(2) == 0 ? 0 : _r.Next(64));
        for (int i = 0; i < 16; i++)
            s.Xmm[i] = RandomVector();
        FillRandom(s.Scratch, (ulong)_r.NextInt64());
        FillRandom(s.Stack, (ulong)_r.NextInt64());
        for (int off = 0; off < s.Scratch.Length; off += 16)
        {
            if (_r.Next(3) == 0)
                BitConverter.TryWriteBytes(s.Scratch.AsSpan(off), RandomVector());
        }
        RandomX87(s.Fx, new SplitMix((int)(uint)_r.NextUInt64Peek()));
        return s;
    }

    /// <summary>
    /// A random x87/MMX state (own random stream, so earlier seeds keep their other values): every exception
    /// masked (natively an unmasked one would end the test process with SIGFPE at the next waiting instruction),
    /// random precision and rounding control, TOP, condition codes, sticky flags, tags, and register values among
    /// normals, denormals, pseudo-denormals, unnormals, zeros, infinities and NaNs.
    /// </summary>
    private static void RandomX87(byte[] fx, SplitMix r)
    {
        Array.Clear(fx);
        ushort fcw = (ushort)(0x037F & ~0x0F00 | (r.Next(16) << 8) | (r.Next(4) == 0 ? 0x1000 : 0));
        ushort fsw = (ushort)((r.Next(8) << 11) | (r.Next(16) is var cc ? ((cc & 7) << 8) | ((cc >> 3) << 14) : 0)
            | (r.Next(3) == 0 ? r.Next(0x80) : 0));
        BitConverter.TryWriteBytes(fx.AsSpan(0), fcw);
        BitConverter.TryWriteBytes(fx.AsSpan(2), fsw);
        fx[4] = (byte)(r.Next(3) switch { 0 => 0, 1 => 0xFF, _ => r.Next(256) });
        for (int k = 0; k < 8; k++)
        {
            ulong mantissa;
            int exponent;
            switch (r.Next(10))
            {
                case 0: mantissa = 0; exponent = 0; break;                                       // zero
                case 1: mantissa = 1UL << 63; exponent = 0x7FFF; break;                          // infinity
                case 2: mantissa = (3UL << 62) | (ulong)(uint)r.Next(); exponent = 0x7FFF; break;      // QNaN
                case 3: mantissa = (1UL << 63) | (ulong)(uint)r.Next(1, int.MaxValue); exponent = 0x7FFF; break; // SNaN
                case 4: mantissa = r.NextUInt64() >> 1; exponent = 0; break;                      // denormal
                case 5: mantissa = r.NextUInt64() | (1UL << 63); exponent = 0; break;             // pseudo-denormal
                case 6: mantissa = r.NextUInt64() >> 1; exponent = r.Next(1, 0x7FFF); break;      // unnormal
                case 7: mantissa = (ulong)r.Next(1000) << 54 | 1UL << 63; exponent = 0x3FFF + r.Next(-3, 12); break; // small integers and halves
                default: mantissa = r.NextUInt64() | (1UL << 63); exponent = 0x3FFF + r.Next(-80, 80); break;
            }
            BitConverter.TryWriteBytes(fx.AsSpan(32 + 16 * k), mantissa);
            BitConverter.TryWriteBytes(fx.AsSpan(40 + 16 * k), (ushort)(exponent | (r.Next(2) << 15)));
        }
    }

    /// <summary>
    /// x87 instructions whose operands the generic path cannot fill safely: FLDCW with every exception masked, and
    /// FNSTENV/FNSAVE/FXSAVE to scratch memory followed (sometimes) by FLDENV/FRSTOR/FXRSTOR of the same image. The
    /// FOP/FIP/FDP/FCS/FDS fields are zeroed in memory before anything reads them (AMD stores them only while an
    /// exception is pending, see <see cref="CpuSnapshot.Compare"/>).
    /// </summary>
    private bool X87Template()
    {
        int d = (ScratchLow + _r.Next(ScratchHigh - ScratchLow - 0x300)) & ~63;
        var at = new MemoryOperand(Register.R15, d, 1);
        switch (_r.Next(4))
        {
            case 0:
            {
                ushort fcw = (ushort)(0x037F & ~0x0F00 | (_r.Next(16) << 8) | (_r.Next(4) == 0 ? 0x1000 : 0));
                Emit(Instruction.Create(Code.Mov_rm16_imm16, at, fcw));
                Emit(Instruction.Create(Code.Fldcw_m2byte, at));
                return true;
            }
            case 1:
                Emit(Instruction.Create(Code.Fnstenv_m28byte, at));
                ZeroPointers(d, 12, 16);
                if (_r.Next(2) == 0)
                    Emit(Instruction.Create(Code.Fldenv_m28byte, at));
                return true;
            case 2:
                Emit(Instruction.Create(Code.Fnsave_m108byte, at));
                ZeroPointers(d, 12, 16);
                if (_r.Next(2) == 0)
                    Emit(Instruction.Create(Code.Frstor_m108byte, at));
                return true;
            default:
            {
                bool wide = _r.Next(2) == 0;
                Emit(Instruction.Create(wide ? Code.Fxsave64_m512byte : Code.Fxsave_m512byte, at));
                ZeroPointers(d, 6, 18);
                // MXCSR_MASK is the implementation's (this AMD host reports bit 17, its misaligned-SSE mode).
                ZeroPointers(d, 28, 4);
                if (_r.Next(2) == 0)
                    Emit(Instruction.Create(wide ? Code.Fxrstor64_m512byte : Code.Fxrstor_m512byte, at));
                return true;
            }
        }
    }

    private void ZeroPointers(int d, int from, int length)
    {
        for (int k = from; k < from + length; k += 2)
            Emit(Instruction.Create(Code.Mov_rm16_imm16, new MemoryOperand(Register.R15, d + k, 1), 0u));
    }

    /// <summary>SplitMix64 fill: System.Random's seeded NextBytes is too slow for 24 KiB per case.</summary>
    private static void FillRandom(Span<byte> bytes, ulong state)
    {
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(bytes);
        for (int i = 0; i < words.Length; i++)
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            words[i] = z ^ (z >> 31);
        }
    }

    private UInt128 RandomVector()
    {
        switch (_r.Next(4))
        {
            case 0: // four floats
            {
                UInt128 v = 0;
                for (int i = 0; i < 4; i++)
                    v |= (UInt128)InterestingFloat() << (32 * i);
                return v;
            }
            case 1: // two doubles
                return ((UInt128)InterestingDouble() << 64) | InterestingDouble();
            case 2: // small integers per byte/word
            {
                UInt128 v = 0;
                for (int i = 0; i < 8; i++)
                    v |= (UInt128)(ushort)Interesting(2) << (16 * i);
                return v;
            }
            default:
                return new UInt128((ulong)_r.NextInt64() ^ ((ulong)_r.Next() << 33), (ulong)_r.NextInt64() ^ ((ulong)_r.Next() << 33));
        }
    }

    private static readonly float[] Floats =
    [
        0f, -0f, 1f, -1f, 0.5f, 1.5f, 2.5f, -2.5f, float.MaxValue, float.MinValue, float.Epsilon, -float.Epsilon,
        float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e-40f, 3e9f, -3e9f, 2147483648f, -2147483648f,
        16777217f, 0.1f, 3.14159f, 1e30f,
    ];

    private static readonly double[] Doubles =
    [
        0d, -0d, 1d, -1d, 0.5, 1.5, 2.5, -2.5, double.MaxValue, double.MinValue, double.Epsilon, -double.Epsilon,
        double.PositiveInfinity, double.NegativeInfinity, double.NaN, 1e-310, 3e9, -3e9, 9.3e18, -9.3e18,
        9223372036854775808d, 2147483647.5, 0.1, 1e300, 3.4e38, 1e-39,
    ];

    private uint InterestingFloat() => _r.Next(5) switch
    {
        0 => (uint)_r.Next() ^ ((uint)_r.Next(2) << 31), // random bits: NaNs with payloads, denormals, ...
        1 => BitConverter.SingleToUInt32Bits((float)(_r.NextDouble() * 2000 - 1000)),
        2 => 0x7F800000u | (uint)_r.Next(1, 0x800000) | ((uint)_r.Next(2) << 31), // a NaN, quiet or signalling
        _ => BitConverter.SingleToUInt32Bits(Floats[_r.Next(Floats.Length)]),
    };

    private ulong InterestingDouble() => _r.Next(5) switch
    {
        0 => (ulong)_r.NextInt64() ^ ((ulong)_r.Next(2) << 63),
        1 => BitConverter.DoubleToUInt64Bits(_r.NextDouble() * 2e6 - 1e6),
        2 => 0x7FF0000000000000UL | (ulong)_r.NextInt64(1, 1L << 52) | ((ulong)_r.Next(2) << 63),
        _ => BitConverter.DoubleToUInt64Bits(Doubles[_r.Next(Doubles.Length)]),
    };

    /// <summary>The string instruction of <paramref name="kind"/> (0 movs, 1 cmps, 2 stos, 3 lods, 4 scas) and element
    /// <paramref name="size"/> in bytes, with the given address size and repeat prefix.</summary>
    internal static Instruction StringInstruction(int kind, int size, int addressSize, RepPrefixKind rep)
        => (kind, size) switch
        {
            (0, 1) => Instruction.CreateMovsb(addressSize, Register.None, rep),
            (0, 2) => Instruction.CreateMovsw(addressSize, Register.None, rep),
            (0, 4) => Instruction.CreateMovsd(addressSize, Register.None, rep),
            (0, _) => Instruction.CreateMovsq(addressSize, Register.None, rep),
            (1, 1) => Instruction.CreateCmpsb(addressSize, Register.None, rep),
            (1, 2) => Instruction.CreateCmpsw(addressSize, Register.None, rep),
            (1, 4) => Instruction.CreateCmpsd(addressSize, Register.None, rep),
            (1, _) => Instruction.CreateCmpsq(addressSize, Register.None, rep),
            (2, 1) => Instruction.CreateStosb(addressSize, rep),
            (2, 2) => Instruction.CreateStosw(addressSize, rep),
            (2, 4) => Instruction.CreateStosd(addressSize, rep),
            (2, _) => Instruction.CreateStosq(addressSize, rep),
            (3, 1) => Instruction.CreateLodsb(addressSize, Register.None, rep),
            (3, 2) => Instruction.CreateLodsw(addressSize, Register.None, rep),
            (3, 4) => Instruction.CreateLodsd(addressSize, Register.None, rep),
            (3, _) => Instruction.CreateLodsq(addressSize, Register.None, rep),
            (4, 1) => Instruction.CreateScasb(addressSize, rep),
            (4, 2) => Instruction.CreateScasw(addressSize, rep),
            (4, 4) => Instruction.CreateScasd(addressSize, rep),
            _ => Instruction.CreateScasq(addressSize, rep),
        };
}
