using System.Runtime.InteropServices;
using Iced.Intel;
using VmmKit.Vmx.Emulator.Sse;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>What an x87 form does besides computing on the register stack.</summary>
[Flags]
internal enum X87FormFlags : byte
{
    /// <summary>The form names ST(i): thunks Index..Index+7 are i = 0..7.</summary>
    StackRegister = 1,
    /// <summary>Reads its memory operand.</summary>
    MemoryRead = 2,
    /// <summary>Writes its memory operand.</summary>
    MemoryWrite = 4,
    /// <summary>Reads ZF/PF/CF (FCMOVcc).</summary>
    ReadsFlags = 8,
    /// <summary>Writes ZF/PF/CF (FCOMI, FUCOMI and the popping forms).</summary>
    WritesFlags = 16,
}

/// <summary>
/// Host memory one x87 thunk works on (on the handler's stack). Fixed layout: the thunks address fields by offset.
/// The guest and host images are the 108-byte FNSAVE/FRSTOR format of 32-bit protected mode
/// (SDM Vol. 1 §8.1.10, figure 8-11): FCW, FSW, FTW (full tags), FIP, FCS|FOP, FDP, FDS, then ST(0)..ST(7), 10 bytes each.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 256)]
internal unsafe struct X87Frame
{
    /// <summary>The guest's x87 state in, the state after the instruction out.</summary>
    [FieldOffset(0)] public fixed byte Guest[108];
    /// <summary>The host's x87 state, saved and restored by the thunk.</summary>
    [FieldOffset(112)] public fixed byte Host[108];
    /// <summary>The memory operand (up to 10 bytes; the thunk's instruction addresses it).</summary>
    [FieldOffset(224)] public fixed byte Memory[16];
    /// <summary>RFLAGS in (FCMOVcc) and out (FCOMI).</summary>
    [FieldOffset(240)] public ulong Rflags;
}

/// <summary>
/// x87 arithmetic runs on the host's own x87 unit, so results, rounding (FCW.PC and FCW.RC), NaN handling,
/// C0-C3, stack faults and exception flags are those of hardware, bit for bit (the way SSE floating point
/// runs through <see cref="FloatThunks"/>). One thunk per form, assembled with Iced at start-up:
/// FNSAVE the host state, FRSTOR the guest image, run the instruction (register form, or memory form on
/// <see cref="X87Frame.Memory"/>), FNSAVE the result image, FRSTOR the host state. The guest image carries no
/// pending exception (the handler clears the sticky flags before and merges them after), so the host never
/// takes #MF; an exception the instruction itself raises stays pending in the saved image.
/// </summary>
internal static unsafe class X87Thunks
{
    /// <summary>Frame offsets used by the generated code.</summary>
    private const int HostOffset = 112, MemoryOffset = 224, FlagsOffset = 240;

    /// <summary>Thunk entry points.</summary>
    public static delegate* unmanaged[SuppressGCTransition]<X87Frame*, void>* Entries;

    /// <summary>First thunk index of each registered Iced <see cref="Code"/> (-1: none).</summary>
    public static readonly short[] FirstIndex;

    /// <summary>Flags of each registered code.</summary>
    public static readonly X87FormFlags[] Flags;

    /// <summary>True when the thunks exist (x86-64 host with executable memory).</summary>
    public static bool Available { get; private set; }

    private static readonly List<(Code Code, int Sti)> Pending = new();

    static X87Thunks()
    {
        int n = 0;
        foreach (Code c in Enum.GetValues<Code>()) n = Math.Max(n, (int)c + 1);
        FirstIndex = new short[n];
        Flags = new X87FormFlags[n];
        FirstIndex.AsSpan().Fill(-1);
    }

    /// <summary>Adds the thunk(s) of <paramref name="code"/>.</summary>
    public static void Add(Code code, X87FormFlags flags)
    {
        if (FirstIndex[(int)code] >= 0)
            return;
        FirstIndex[(int)code] = (short)Pending.Count;
        Flags[(int)code] = flags;
        int n = (flags & X87FormFlags.StackRegister) != 0 ? 8 : 1;
        for (int k = 0; k < n; k++)
            Pending.Add((code, k));
    }

    /// <summary>Encodes every added thunk into executable memory (x86-64 hosts only).</summary>
    public static bool Build()
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || Pending.Count == 0 || Available)
            return Available;
        var frame = OperatingSystem.IsWindows() ? rcx : rdi;
        var a = new Assembler(64);
        var labels = new Label[Pending.Count];
        for (int k = 0; k < Pending.Count; k++)
        {
            var (code, sti) = Pending[k];
            labels[k] = a.CreateLabel();
            a.Label(ref labels[k]);
            a.fnsave(__[frame + HostOffset]);
            a.frstor(__[frame]);
            a.pushfq();
            a.push(__qword_ptr[frame + FlagsOffset]);
            a.popfq();
            a.AddInstruction(Form(code, sti, frame));
            a.pushfq();
            a.pop(__qword_ptr[frame + FlagsOffset]);
            a.popfq();
            a.fnsave(__[frame]);
            a.frstor(__[frame + HostOffset]);
            a.ret();
        }
        var writer = new BytesWriter();
        var result = a.Assemble(writer, 0, BlockEncoderOptions.ReturnNewInstructionOffsets);
        byte* code0 = ExecutableMemory.Create(writer.Bytes.ToArray());
        if (code0 == null)
            return false;
        Entries = (delegate* unmanaged[SuppressGCTransition]<X87Frame*, void>*)NativeMemory.AllocZeroed((nuint)Pending.Count, (nuint)sizeof(nint));
        for (int k = 0; k < Pending.Count; k++)
            Entries[k] = (delegate* unmanaged[SuppressGCTransition]<X87Frame*, void>)(code0 + result.GetLabelRIP(labels[k]));
        Available = true;
        return true;
    }

    /// <summary>The instruction of one thunk: ST(<paramref name="sti"/>) for ST(i) operands, [frame + Memory] for the memory operand.</summary>
    private static Instruction Form(Code code, int sti, AssemblerRegister64 frame)
    {
        var op = code.ToOpCode();
        var ins = new Instruction { Code = code };
        for (int k = 0; k < op.OpCount; k++)
        {
            switch (op.GetOpKind(k))
            {
                case OpCodeOperandKind.st0:
                    ins.SetOpKind(k, OpKind.Register);
                    ins.SetOpRegister(k, Register.ST0);
                    break;
                case OpCodeOperandKind.sti_opcode:
                    ins.SetOpKind(k, OpKind.Register);
                    ins.SetOpRegister(k, Register.ST0 + sti);
                    break;
                case OpCodeOperandKind.mem:
                    ins.SetOpKind(k, OpKind.Memory);
                    ins.MemoryBase = (Register)frame;
                    ins.MemoryDisplacement64 = MemoryOffset;
                    ins.MemoryDisplSize = 1;
                    break;
                default:
                    throw new InvalidOperationException($"x87 thunk for {code}: operand kind {op.GetOpKind(k)}");
            }
        }
        return ins;
    }

    private sealed class BytesWriter : CodeWriter
    {
        public List<byte> Bytes { get; } = new(16384);

        public override void WriteByte(byte value) => Bytes.Add(value);
    }
}
