using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

/// <summary>Assembles code with Iced, places it at <see cref="CodeAddress"/> in a flat machine and runs it.</summary>
internal sealed unsafe class GuestRunner : IDisposable
{
    public const ulong CodeAddress = 0x1000;
    public const ulong StackTop = 0x80000;
    public const ulong DataAddress = 0x20000;

    public GuestRunner(int bitness = 64)
    {
        Machine = new FlatTestMachine(1 << 20, bitness);
        Bitness = bitness;
    }

    public FlatTestMachine Machine { get; }

    public int Bitness { get; }

    public ref CpuState S => ref Machine.State;

    public FlatRunResult Run(Action<Assembler> build, ulong budget = 10_000_000)
    {
        var a = new Assembler(Bitness);
        build(a);
        a.hlt();
        var writer = new ArrayWriter();
        a.Assemble(writer, CodeAddress);
        writer.Bytes.CopyTo(Machine.Memory.Slice((int)CodeAddress));
        S.Rip = CodeAddress;
        S.Gpr[4] = StackTop;
        return Machine.Run(budget);
    }

    public ulong Reg(int index) => S.Gpr[index];

    public ulong Flags => S.GetRflags();

    public void Dispose() => Machine.Dispose();

    private sealed class ArrayWriter : CodeWriter
    {
        private readonly List<byte> _bytes = new();

        public byte[] Bytes => _bytes.ToArray();

        public override void WriteByte(byte value) => _bytes.Add(value);
    }
}
