using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>Where a SIMD floating-point instruction takes its source and puts its result.</summary>
internal enum FloatOperand : byte
{
    /// <summary>An XMM register (or memory of the instruction's memory size).</summary>
    Xmm,
    /// <summary>A 32-bit general register (or m32).</summary>
    Gpr32,
    /// <summary>A 64-bit general register (or m64).</summary>
    Gpr64,
    /// <summary>RFLAGS (COMISS/UCOMISS and the double forms).</summary>
    Flags,
}

/// <summary>Shape of one SIMD floating-point form, indexed like its thunk.</summary>
internal struct FloatForm
{
    /// <summary>Destination kind.</summary>
    public FloatOperand Destination;
    /// <summary>Source kind.</summary>
    public FloatOperand Source;
    /// <summary>Memory source size in bytes (4, 8, 16); 16 requires alignment.</summary>
    public byte MemorySize;
    /// <summary>The form takes a compare predicate (imm8[2:0]); thunks Index..Index+7 are the predicates.</summary>
    public bool Predicate;
    /// <summary>Number of imm8 values with their own thunk (ROUNDxx: 16, imm8[3:0]); 0 when the form has no imm8.</summary>
    public byte Immediates;
}

/// <summary>
/// The data block a thunk works on (host memory, on the handler's stack).
/// Layout is fixed: the thunks address the fields by offset.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct FloatFrame
{
    /// <summary>Destination (and first source) XMM value.</summary>
    [FieldOffset(0)] public ulong A0;
    /// <summary>High half of <see cref="A0"/>.</summary>
    [FieldOffset(8)] public ulong A1;
    /// <summary>Second source XMM value.</summary>
    [FieldOffset(16)] public ulong B0;
    /// <summary>High half of <see cref="B0"/>.</summary>
    [FieldOffset(24)] public ulong B1;
    /// <summary>General-register operand (source of CVTSI2SS, destination of CVTSS2SI ...).</summary>
    [FieldOffset(32)] public ulong Gpr;
    /// <summary>RFLAGS after the instruction.</summary>
    [FieldOffset(40)] public ulong Rflags;
    /// <summary>MXCSR to run with; on return, MXCSR after the instruction.</summary>
    [FieldOffset(48)] public uint Mxcsr;
    /// <summary>The host's MXCSR, saved and restored by the thunk.</summary>
    [FieldOffset(52)] public uint HostMxcsr;
}

/// <summary>
/// SIMD floating-point arithmetic, compares and conversions are executed by the host's own SSE unit, so
/// results are bit-exact with hardware in every MXCSR mode (rounding control, FTZ, DAZ), including NaN
/// propagation and the exception flags — which .NET's intrinsics cannot provide, since they neither take
/// a rounding mode nor report MXCSR flags. At start-up each instruction form gets a thunk, encoded with
/// Iced in its register form: load MXCSR and the operands from a <see cref="FloatFrame"/>, run the one
/// instruction, store result, RFLAGS and MXCSR back, restore the host MXCSR. On hosts that are not x86-64
/// (or refuse executable memory) <see cref="Available"/> is false and these instructions raise #UD in the
/// guest rather than compute something approximate.
/// </summary>
internal static unsafe class FloatThunks
{
    /// <summary>Thunk entry points; a form's thunk index is its handler-table Sub value (+ predicate).</summary>
    public static readonly delegate* unmanaged[SuppressGCTransition]<FloatFrame*, void>* Entries;

    /// <summary>Shape of each thunk's form.</summary>
    public static readonly FloatForm[] Forms;

    /// <summary>True when the thunks exist (x86-64 host with executable memory).</summary>
    public static bool Available { get; private set; }

    private static readonly List<(Code Code, FloatForm Form)> Pending = new();

    static FloatThunks()
    {
        Forms = new FloatForm[256];
        Entries = (delegate* unmanaged[SuppressGCTransition]<FloatFrame*, void>*)NativeMemory.AllocZeroed(256, (nuint)sizeof(nint));
    }

    /// <summary>Adds a thunk for <paramref name="code"/> (8 for predicate forms); returns its first index.</summary>
    public static int Add(Code code, FloatForm form)
    {
        int index = Pending.Count;
        int n = form.Predicate ? 8 : form.Immediates > 0 ? form.Immediates : 1;
        if (index + n > 256)
            throw new InvalidOperationException("too many SIMD floating-point forms for a byte index");
        for (int k = 0; k < n; k++)
        {
            Pending.Add((code, form));
            Forms[index + k] = form;
        }
        return index;
    }

    /// <summary>Encodes every added thunk into executable memory (x86-64 hosts only).</summary>
    public static bool Build()
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || Pending.Count == 0)
            return false;
        var frame = OperatingSystem.IsWindows() ? rcx : rdi;
        var a = new Assembler(64);
        var labels = new Label[Pending.Count];
        for (int k = 0; k < Pending.Count; k++)
        {
            var (code, form) = Pending[k];
            int predicate = form.Predicate || form.Immediates > 0 ? k - FirstIndexOf(k) : -1;
            labels[k] = a.CreateLabel();
            a.Label(ref labels[k]);
            a.stmxcsr(__dword_ptr[frame + 52]);
            a.ldmxcsr(__dword_ptr[frame + 48]);
            a.movdqu(xmm0, __xmmword_ptr[frame + 0]);
            a.movdqu(xmm1, __xmmword_ptr[frame + 16]);
            a.mov(rax, __qword_ptr[frame + 32]);
            a.AddInstruction(RegisterForm(code, form, predicate));
            a.pushfq();
            a.pop(__qword_ptr[frame + 40]);
            a.movdqu(__xmmword_ptr[frame + 0], xmm0);
            a.mov(__qword_ptr[frame + 32], rax);
            a.stmxcsr(__dword_ptr[frame + 48]);
            a.ldmxcsr(__dword_ptr[frame + 52]);
            a.ret();
        }
        var writer = new ThunkWriter();
        var result = a.Assemble(writer, 0, BlockEncoderOptions.ReturnNewInstructionOffsets);
        byte* code0 = ExecutableMemory.Create(writer.Bytes.ToArray());
        if (code0 == null)
            return false;
        for (int k = 0; k < Pending.Count; k++)
            Entries[k] = (delegate* unmanaged[SuppressGCTransition]<FloatFrame*, void>)(code0 + result.GetLabelRIP(labels[k]));
        Available = true;
        return true;

        int FirstIndexOf(int k)
        {
            var code = Pending[k].Code;
            while (k > 0 && Pending[k - 1].Code == code)
                k--;
            return k;
        }
    }

    private static Instruction RegisterForm(Code code, FloatForm form, int predicate)
    {
        Register dst = form.Destination switch
        {
            FloatOperand.Gpr32 => Register.EAX,
            FloatOperand.Gpr64 => Register.RAX,
            _ => Register.XMM0,
        };
        Register src = form.Source switch
        {
            FloatOperand.Gpr32 => Register.EAX,
            FloatOperand.Gpr64 => Register.RAX,
            _ => Register.XMM1,
        };
        if (form.Destination == FloatOperand.Flags)
            dst = Register.XMM0;
        return predicate >= 0 ? Instruction.Create(code, dst, src, predicate) : Instruction.Create(code, dst, src);
    }

    private sealed class ThunkWriter : CodeWriter
    {
        public List<byte> Bytes { get; } = new(8192);

        public override void WriteByte(byte value) => Bytes.Add(value);
    }
}
