using Iced.Intel;
using VmmKit.Ept;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>
/// The guest the harness runs: 16 pages of guest-physical memory at GPA 0 backed by a VmmKit.Ept MachineMemory,
/// code at <see cref="EntryPoint"/> doing CPUID, OUT DX, IN imm, VMCALL, a read of an unmapped GPA and a write to a
/// read-only GPA (both EPT violations, resumed at EBX), then HLT.
/// </summary>
internal sealed class HarnessGuest : IDisposable
{
    public const uint EntryPoint = 0x1000;
    public const ushort OutPort = 0x1234;
    public const byte InPort = 0x71;
    public const uint UnmappedGpa = 0x0080_0000;
    public const uint ReadOnlyGpa = 0x3000;
    public const int GuestPages = 16;
    public const uint InvlpgAddress = 0x2000;

    public MachineMemory Memory { get; }
    public EptTables Ept { get; }

    /// <summary>Guest-physical addresses of each instruction that exits, in order.</summary>
    public IReadOnlyList<(string What, uint Rip, uint Length)> ExitingInstructions { get; }

    public HarnessGuest()
    {
        Memory = new MachineMemory(32ul << 20);
        // Keep the guest's frames and EPT tables above the harness's own low memory (frames 0..511 = first 2 MiB).
        Memory.AllocateContiguous(new FrameOwner(0x7FF0), 512);
        var owner = new FrameOwner(1);
        Ept = new EptTables(Memory, owner);
        for (uint i = 0; i < GuestPages; i++)
        {
            var frame = Memory.AllocateFrame(owner);
            var access = i * 4096 == ReadOnlyGpa ? EptAccess.Read : EptAccess.Read | EptAccess.Write | EptAccess.Execute;
            Ept.Map(new GuestPhysicalAddress(i * 4096ul), frame, 1, access);
        }

        var a = new Assembler(32);
        var marks = new List<(string, Label)>();
        Label Mark(string what)
        {
            var l = a.CreateLabel();
            a.Label(ref l);
            marks.Add((what, l));
            return l;
        }
        var after1 = a.CreateLabel();
        var after2 = a.CreateLabel();
        a.xor(eax, eax);
        Mark("cpuid");
        a.cpuid();
        a.mov(dx, OutPort);
        a.mov(al, 0x55);
        Mark("out");
        a.@out(dx, al);
        Mark("in");
        a.@in(al, InPort);
        Mark("vmcall");
        a.vmcall();
        a.mov(ebx, 0);
        var fix1 = a.Instructions.Count - 1;
        Mark("read");
        a.mov(eax, __dword_ptr[UnmappedGpa]);
        a.Label(ref after1);
        a.mov(ebx, 0);
        var fix2 = a.Instructions.Count - 1;
        Mark("write");
        a.mov(__dword_ptr[ReadOnlyGpa], 0x11223344);
        a.Label(ref after2);
        a.mov(eax, 0x5000);
        Mark("mov cr3");
        a.mov(cr3, eax);
        Mark("mov from cr3");
        a.mov(esi, cr3);
        a.mov(eax, 0x31);
        Mark("mov cr0");
        a.mov(cr0, eax);
        Mark("mov dr1");
        a.mov(dr1, ecx);
        Mark("invlpg");
        a.invlpg(__[InvlpgAddress]);
        Mark("rdtsc");
        a.rdtsc();
        a.mov(ecx, 0x10);
        Mark("rdmsr");
        a.rdmsr();
        var after3 = a.CreateLabel();
        var after4 = a.CreateLabel();
        var after5 = a.CreateLabel();
        a.mov(ebx, 0);
        Mark("ud2");
        a.ud2();
        a.Label(ref after3);
        a.mov(ebx, 0);
        Mark("int3");
        a.int3();
        a.Label(ref after4);
        a.mov(ebx, 0);
        a.mov(ax, 0x08);
        Mark("gp");
        a.mov(es, ax); // the guest's GDT limit is 0: #GP(selector 0x08)
        a.Label(ref after5);
        marks.Add(("hlt", after5));
        a.hlt();
        // Two passes: assemble once to learn the resume addresses, then patch the "mov ebx, imm" operands.
        var ms = new MemoryStream();
        var r = a.Assemble(new StreamCodeWriter(ms), EntryPoint, BlockEncoderOptions.ReturnNewInstructionOffsets);
        uint resume1 = (uint)r.GetLabelRIP(after1), resume2 = (uint)r.GetLabelRIP(after2);
        uint resume3 = (uint)r.GetLabelRIP(after3), resume4 = (uint)r.GetLabelRIP(after4), resume5 = (uint)r.GetLabelRIP(after5);
        byte[] code = ms.ToArray();
        // "mov ebx, imm32" is BB imm32: patch the immediates in place.
        PatchMovEbx(code, resume1, resume2, resume3, resume4, resume5);
        _ = fix1;
        _ = fix2;

        var list = new List<(string, uint, uint)>();
        for (int i = 0; i < marks.Count; i++)
        {
            var (what, l) = marks[i];
            uint rip = (uint)r.GetLabelRIP(l);
            var decoder = Decoder.Create(32, new ByteArrayCodeReader(code, (int)(rip - EntryPoint), code.Length - (int)(rip - EntryPoint)));
            decoder.IP = rip;
            var instr = decoder.Decode();
            list.Add((what, rip, (uint)instr.Length));
        }
        ExitingInstructions = list;

        Ept.TryLookup(new GuestFrameNumber(EntryPoint >> 12), out var codeFrame, out _);
        code.CopyTo(Memory.GetFrame(codeFrame));
    }

    private static void PatchMovEbx(byte[] code, params uint[] values)
    {
        var at = new List<int>();
        for (int i = 0; i < code.Length - 4; i++)
            if (code[i] == 0xBB && BitConverter.ToUInt32(code, i + 1) == 0)
                at.Add(i);
        if (at.Count != values.Length)
            throw new InvalidOperationException("unexpected guest code layout");
        for (int k = 0; k < values.Length; k++)
            BitConverter.TryWriteBytes(code.AsSpan(at[k] + 1), values[k]);
    }

    public void Dispose()
    {
        Ept.Dispose();
        Memory.Dispose();
    }
}
