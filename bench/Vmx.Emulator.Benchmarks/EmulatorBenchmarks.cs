using BenchmarkDotNet.Attributes;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Benchmarks;

/// <summary>Guest images used by the benchmarks.</summary>
public static class GuestImages
{
    /// <summary>samples/guests/build/workload.elf (run <c>make -C samples/guests</c> first), searched upwards from the current directory.</summary>
    public static byte[]? TryLoadWorkload()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string path = Path.Combine(dir.FullName, "samples", "guests", "build", "workload.elf");
            if (File.Exists(path)) return File.ReadAllBytes(path);
        }
        return null;
    }

    /// <summary>A tight integer loop (add/xor/shift/cmp/jcc, 6 instructions per iteration) as a minimal ELF32 PVH image.</summary>
    public static byte[] IntegerLoop(uint iterations)
    {
        var a = new Assembler(32);
        var top = a.CreateLabel();
        a.mov(ecx, iterations);
        a.xor(eax, eax);
        a.mov(edx, 1);
        a.Label(ref top);
        a.add(eax, ecx);
        a.xor(edx, eax);
        a.shl(edx, 1);
        a.lea(eax, __dword_ptr[eax + edx * 2 + 3]);
        a.dec(ecx);
        a.jnz(top);
        a.mov(dx, 0xF4);
        a.@out(dx, eax);
        a.hlt();
        return Elf32(a);
    }

    /// <summary>
    /// A guest-paging walk loop: the guest identity-maps its first 16 MiB with PAE paging and 4 KiB pages (SDM Vol. 3A
    /// §4.4), then <paramref name="rounds"/> times reloads CR3 (flushing the TLB) and reads one dword from each of the
    /// 1024 pages in [4 MiB, 8 MiB), so every read is a software-TLB miss and a full guest page walk through the EPT.
    /// </summary>
    public static byte[] PagedWalk(uint rounds)
    {
        const uint pdpt = 0x200000, pd = 0x201000, pt = 0x202000;
        var a = new Assembler(32);
        var fillPt = a.CreateLabel();
        var fillPd = a.CreateLabel();
        var round = a.CreateLabel();
        var touch = a.CreateLabel();
        // 8 page tables (4096 PTEs) mapping [0, 16 MiB) read/write.
        a.xor(ecx, ecx);
        a.Label(ref fillPt);
        a.mov(eax, ecx);
        a.shl(eax, 12);
        a.or(eax, 3);
        a.mov(__dword_ptr[ecx * 8 + (int)pt], eax);
        a.mov(__dword_ptr[ecx * 8 + (int)pt + 4], 0);
        a.inc(ecx);
        a.cmp(ecx, 4096);
        a.jne(fillPt);
        // PD entries 0-7 point at them; PDPTE 0 at the PD (a PAE PDPTE has only P among the low flags).
        a.xor(ecx, ecx);
        a.Label(ref fillPd);
        a.mov(eax, ecx);
        a.shl(eax, 12);
        a.add(eax, pt | 3);
        a.mov(__dword_ptr[ecx * 8 + (int)pd], eax);
        a.mov(__dword_ptr[ecx * 8 + (int)pd + 4], 0);
        a.inc(ecx);
        a.cmp(ecx, 8);
        a.jne(fillPd);
        a.mov(__dword_ptr[pdpt], pd | 1);
        a.mov(__dword_ptr[pdpt + 4], 0);
        a.mov(eax, pdpt);
        a.mov(cr3, eax);
        a.mov(eax, cr4);
        a.or(eax, 0x20);
        a.mov(cr4, eax);
        a.mov(eax, cr0);
        a.or(eax, unchecked((int)0x8000_0000));
        a.mov(cr0, eax);
        a.mov(edi, rounds);
        a.xor(edx, edx);
        a.Label(ref round);
        a.mov(eax, pdpt);
        a.mov(cr3, eax);
        a.mov(esi, 0x400000);
        a.mov(ecx, 1024);
        a.Label(ref touch);
        a.add(edx, __dword_ptr[esi]);
        a.add(esi, 0x1000);
        a.dec(ecx);
        a.jnz(touch);
        a.dec(edi);
        a.jnz(round);
        a.mov(eax, edx);
        a.mov(dx, 0xF4);
        a.@out(dx, eax);
        a.hlt();
        return Elf32(a);
    }

    private static byte[] Elf32(Assembler a)
    {
        const uint load = 0x100000;
        var w = new ListWriter();
        a.Assemble(w, load + 0x54);
        byte[] code = w.Bytes.ToArray();
        // ELF32 header (52 bytes) + one PT_LOAD program header (32 bytes) + code.
        var elf = new byte[0x54 + code.Length];
        var s = elf.AsSpan();
        "\x7F"u8.CopyTo(s); "ELF"u8.CopyTo(s[1..]);
        s[4] = 1; s[5] = 1; s[6] = 1;
        BitConverter.TryWriteBytes(s[0x10..], (ushort)2);
        BitConverter.TryWriteBytes(s[0x12..], (ushort)3);
        BitConverter.TryWriteBytes(s[0x14..], 1u);
        BitConverter.TryWriteBytes(s[0x18..], load + 0x54);
        BitConverter.TryWriteBytes(s[0x1C..], 0x34u);
        BitConverter.TryWriteBytes(s[0x28..], (ushort)0x34);
        BitConverter.TryWriteBytes(s[0x2A..], (ushort)0x20);
        BitConverter.TryWriteBytes(s[0x2C..], (ushort)1);
        var ph = s[0x34..];
        BitConverter.TryWriteBytes(ph, 1u);
        BitConverter.TryWriteBytes(ph[4..], 0u);
        BitConverter.TryWriteBytes(ph[8..], load);
        BitConverter.TryWriteBytes(ph[12..], load);
        BitConverter.TryWriteBytes(ph[16..], (uint)elf.Length);
        BitConverter.TryWriteBytes(ph[20..], (uint)elf.Length);
        BitConverter.TryWriteBytes(ph[24..], 7u);
        code.CopyTo(s[0x54..]);
        return elf;
    }

    private sealed class ListWriter : CodeWriter
    {
        public readonly List<byte> Bytes = new();

        public override void WriteByte(byte value) => Bytes.Add(value);
    }
}

/// <summary>Guest instructions per second of the interpreter and of the translating tier.</summary>
[MemoryDiagnoser]
public class EmulatorBenchmarks
{
    private PvhWorkload _loop = null!;
    private PvhWorkload _paged = null!;
    private PvhWorkload? _workload;

    /// <summary>The processor's execution tier.</summary>
    [Params(ExecutionTier.Interpreter, ExecutionTier.Translator)]
    public ExecutionTier Tier { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _loop = new PvhWorkload(GuestImages.IntegerLoop(1_000_000), "") { Tier = Tier };
        _paged = new PvhWorkload(GuestImages.PagedWalk(200), "") { Tier = Tier };
        byte[]? elf = GuestImages.TryLoadWorkload();
        if (elf != null) _workload = new PvhWorkload(elf, "iterations=1") { Tier = Tier };
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _loop.Dispose();
        _paged.Dispose();
        _workload?.Dispose();
    }

    /// <summary>6 million guest instructions of a tight integer loop.</summary>
    [Benchmark]
    public ulong IntegerLoop()
    {
        _loop.Reset();
        _loop.Run();
        return _loop.InstructionsRetired;
    }

    /// <summary>200 rounds of 1024 guest page walks (PAE, 4 KiB pages), each a software-TLB miss.</summary>
    [Benchmark]
    public ulong PagedWalk()
    {
        _paged.Reset();
        _paged.Run();
        return _paged.InstructionsRetired;
    }

    /// <summary>samples/guests workload (CRC32, sort, matrix multiply, strings), 1 iteration.</summary>
    [Benchmark]
    public ulong Workload()
    {
        if (_workload == null) return 0;
        _workload.Reset();
        _workload.Run();
        return _workload.InstructionsRetired;
    }
}
