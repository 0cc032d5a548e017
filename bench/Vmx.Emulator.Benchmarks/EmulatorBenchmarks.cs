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
        const uint load = 0x100000;
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
    private PvhWorkload? _workload;

    /// <summary>The processor's execution tier.</summary>
    [Params(ExecutionTier.Interpreter, ExecutionTier.Translator)]
    public ExecutionTier Tier { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _loop = new PvhWorkload(GuestImages.IntegerLoop(1_000_000), "") { Tier = Tier };
        byte[]? elf = GuestImages.TryLoadWorkload();
        if (elf != null) _workload = new PvhWorkload(elf, "iterations=1") { Tier = Tier };
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _loop.Dispose();
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
