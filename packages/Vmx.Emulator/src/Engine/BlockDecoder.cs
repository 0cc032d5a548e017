using Iced.Intel;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// Turns guest code into <see cref="Block"/>s: decodes with Iced once per instruction address and
/// fills <see cref="Instr"/> from the handler table. Cold path (allocation is fine here).
/// </summary>
internal sealed unsafe class BlockDecoder
{
    /// <summary>Upper bound of instructions per block.</summary>
    public const int MaxInstructions = 64;

    private readonly Core _core;
    private readonly byte[] _buffer = new byte[4096 + 16];

    public BlockDecoder(Core core) => _core = core;

    /// <summary>Decodes the block at linear <paramref name="lin"/> (guest-physical <paramref name="phys"/>, host <paramref name="host"/>).</summary>
    public Block? Decode(ulong lin, ulong phys, byte* host, int bitness, uint epoch)
    {
        int inPage = 4096 - (int)(lin & 0xFFF);
        new ReadOnlySpan<byte>(host, inPage).CopyTo(_buffer);
        int available = inPage;
        ulong lastPage = phys & ~0xFFFUL;
        ulong rip = _core.S.Rip;

        var reader = new ByteArrayCodeReader(_buffer, 0, available);
        var decoder = Decoder.Create(bitness, reader, rip, DecoderOptions.None);
        Instr[] instrs = GC.AllocateArray<Instr>(MaxInstructions, pinned: true);
        int count = 0;
        int offset = 0;
        while (count < MaxInstructions)
        {
            decoder.Decode(out Instruction ins);
            if (decoder.LastError == DecoderError.NoMoreBytes && (count > 0 || available == inPage))
            {
                if (count > 0) break; // the next instruction crosses the page (or the fetched bytes): it starts its own block
                // The first instruction crosses into the next page: fetch up to 15 more bytes.
                ulong nextLin = (lin + (ulong)inPage) & _core.LinearMask;
                byte* next = _core.HostPointer(nextLin, MemoryAccess.Execute);
                if (next == null) return null;
                lastPage = (_core.Tlb + ((nextLin >> 12) & (SoftTlb.Entries - 1)))->PhysicalPage;
                new ReadOnlySpan<byte>(next, 15).CopyTo(_buffer.AsSpan(inPage));
                available = inPage + 15;
                reader = new ByteArrayCodeReader(_buffer, 0, available);
                decoder = Decoder.Create(bitness, reader, rip, DecoderOptions.None);
                continue;
            }
            fixed (Instr* p = &instrs[count])
            {
                Fill(p, in ins, offset, bitness);
            }
            count++;
            offset += ins.Length;
            if (EndsBlock(in ins) || offset >= inPage) break; // a block never runs on into the next page
        }
        byte[] bytes = _buffer.AsSpan(0, offset).ToArray();
        return new Block(instrs, count, lin, phys, bitness, lastPage, bytes, epoch);
    }

    private static bool EndsBlock(in Instruction ins)
    {
        if (ins.Code == Code.INVALID) return true;
        if (ins.FlowControl != FlowControl.Next) return true;
        return (HandlerTable.Entries[(int)ins.Code].Flags & HandlerFlags.EndsBlock) != 0;
    }

    private void Fill(Instr* p, in Instruction ins, int offset, int bitness)
    {
        *p = default;
        ref readonly HandlerEntry h = ref HandlerTable.Entries[(int)ins.Code];
        p->Handler = h.Handler;
        p->Sub = h.Sub;
        p->Ip = ins.IP;
        p->Code = (ushort)ins.Code;
        p->Length = (byte)ins.Length;
        p->Op0 = p->Op1 = p->Op2 = Instr.NoRegister;
        p->MemBase = p->MemIndex = Instr.NoRegister;
        p->MemSeg = 3; // DS
        p->AddrSize = (byte)AddressSize(offset, bitness);
        if (ins.HasRepPrefix || ins.HasRepePrefix) p->Flags |= InstrFlags.Rep;
        if (ins.HasRepnePrefix) p->Flags |= InstrFlags.Repne;
        if (ins.HasLockPrefix) p->Flags |= InstrFlags.Lock;
        if (bitness == 64) p->Flags |= InstrFlags.Long;
        if (ins.Code == Code.INVALID) return;
        // SDM Vol. 3A §9.1.2.2: LOCK'ed read-modify-writes, and XCHG with memory (locked implicitly), are atomic
        // against other processors' host threads (Handlers/LockedRmw.cs).
        if ((ins.HasLockPrefix || ins.Mnemonic == Mnemonic.Xchg) && (ins.Op0Kind == OpKind.Memory || ins.Op1Kind == OpKind.Memory))
            p->Handler = &Handlers.LockedRmw.Run;

        int immIndex = 0;
        for (int k = 0; k < ins.OpCount && k < 4; k++)
        {
            OpKind kind = ins.GetOpKind(k);
            byte slot = Instr.NoRegister;
            int size = 0;
            switch (kind)
            {
                case OpKind.Register:
                    {
                        Register r = ins.GetOpRegister(k);
                        slot = RegisterSlot(r, out size);
                        break;
                    }
                case OpKind.Memory:
                    slot = Instr.MemoryOperand;
                    FillMemory(p, in ins);
                    size = ins.MemorySize.GetSize();
                    break;
                case OpKind.Immediate8:
                case OpKind.Immediate16:
                case OpKind.Immediate32:
                case OpKind.Immediate64:
                case OpKind.Immediate8to16:
                case OpKind.Immediate8to32:
                case OpKind.Immediate8to64:
                case OpKind.Immediate32to64:
                    size = kind switch
                    {
                        OpKind.Immediate8 => 1,
                        OpKind.Immediate16 or OpKind.Immediate8to16 => 2,
                        OpKind.Immediate32 or OpKind.Immediate8to32 => 4,
                        _ => 8,
                    };
                    if (immIndex++ == 0) p->Imm = ins.GetImmediate(k); else p->Imm2 = ins.GetImmediate(k);
                    break;
                case OpKind.Immediate8_2nd:
                    p->Imm2 = ins.Immediate8_2nd;
                    size = 1;
                    break;
                case OpKind.NearBranch16:
                case OpKind.NearBranch32:
                case OpKind.NearBranch64:
                    p->Imm = ins.NearBranchTarget;
                    size = kind == OpKind.NearBranch16 ? 2 : kind == OpKind.NearBranch32 ? 4 : 8;
                    break;
                case OpKind.FarBranch16:
                case OpKind.FarBranch32:
                    p->Imm = kind == OpKind.FarBranch16 ? ins.FarBranch16 : ins.FarBranch32;
                    p->Imm2 = ins.FarBranchSelector;
                    size = kind == OpKind.FarBranch16 ? 2 : 4;
                    break;
                default:
                    // String operands (MemorySegSI, MemoryESDI, ...): handlers use AddrSize/MemSeg.
                    if (ins.MemorySegment != Register.None) p->MemSeg = (byte)(ins.MemorySegment - Register.ES);
                    size = ins.MemorySize.GetSize();
                    break;
            }
            if (k == 0) { p->Op0 = slot; p->OpSize = (byte)size; }
            else if (k == 1) { p->Op1 = slot; p->Op1Size = (byte)size; }
            else if (k == 2) { p->Op2 = slot; }
        }
        if (ins.OpCount > 0 && p->OpSize == 0) p->OpSize = (byte)ins.MemorySize.GetSize();
        p->MemSize = (byte)(ins.MemorySize == MemorySize.Unknown ? 0 : ins.MemorySize.GetSize());
        if (h.Size != 0) p->OpSize = h.Size;
    }

    private static void FillMemory(Instr* p, in Instruction ins)
    {
        p->MemSeg = (byte)(ins.MemorySegment - Register.ES);
        if (ins.IsIPRelativeMemoryOperand)
        {
            p->Disp = (long)ins.IPRelativeMemoryAddress;
            return;
        }
        p->Disp = (long)ins.MemoryDisplacement64;
        if (ins.MemoryBase != Register.None) p->MemBase = (byte)ins.MemoryBase.GetNumber();
        if (ins.MemoryIndex != Register.None)
        {
            p->MemIndex = (byte)ins.MemoryIndex.GetNumber();
            p->MemScaleShift = (byte)System.Numerics.BitOperations.Log2((uint)ins.MemoryIndexScale);
        }
    }

    /// <summary>Operand slot for an Iced register (see <see cref="Instr"/>).</summary>
    public static byte RegisterSlot(Register r, out int size)
    {
        if (r >= Register.AL && r <= Register.R15L)
        {
            size = 1;
            int idx = r - Register.AL;
            if (idx >= 4 && idx < 8) return (byte)(Instr.Gpr8High + idx - 4);
            return (byte)(idx >= 8 ? idx - 4 : idx);
        }
        if (r >= Register.AX && r <= Register.R15W) { size = 2; return (byte)(r - Register.AX); }
        if (r >= Register.EAX && r <= Register.R15D) { size = 4; return (byte)(r - Register.EAX); }
        if (r >= Register.RAX && r <= Register.R15) { size = 8; return (byte)(r - Register.RAX); }
        if (r >= Register.XMM0 && r <= Register.XMM15) { size = 16; return (byte)(r - Register.XMM0); }
        if (r >= Register.ES && r <= Register.GS) { size = 2; return (byte)(r - Register.ES); }
        if (r >= Register.CR0 && r <= Register.CR15) { size = 8; return (byte)(r - Register.CR0); }
        if (r >= Register.DR0 && r <= Register.DR15) { size = 8; return (byte)(r - Register.DR0); }
        size = 0;
        return Instr.NoRegister;
    }

    private int AddressSize(int offset, int bitness)
    {
        // SDM Vol. 2A §2.1.1: the 67h prefix toggles the default address size.
        bool a67 = false;
        for (int k = offset; k < offset + 15 && k < _buffer.Length; k++)
        {
            byte b = _buffer[k];
            if (b == 0x67) { a67 = true; continue; }
            if (b is 0x66 or 0xF0 or 0xF2 or 0xF3 or 0x26 or 0x2E or 0x36 or 0x3E or 0x64 or 0x65) continue;
            break;
        }
        return bitness switch
        {
            64 => a67 ? 4 : 8,
            32 => a67 ? 2 : 4,
            _ => a67 ? 4 : 2,
        };
    }
}
