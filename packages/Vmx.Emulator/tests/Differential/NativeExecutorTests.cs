using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>The oracle's own plumbing: the stub must round-trip every register and run code.</summary>
public sealed class NativeExecutorTests
{
    [Fact]
    public void Empty_sequence_round_trips_the_whole_state()
    {
        using var arena = new TestArena();
        var native = new NativeExecutor(arena);
        var rng = new Random(1);
        var s = new CpuSnapshot();
        for (int i = 0; i < 16; i++)
        {
            s.Gpr[i] = (ulong)rng.NextInt64();
            s.Xmm[i] = new UInt128((ulong)rng.NextInt64(), (ulong)rng.NextInt64());
        }
        s.Gpr[4] = arena.Base + TestArena.InitialRspOffset;
        s.Rflags = 0x202 | RflagsBits.CF | RflagsBits.ZF | RflagsBits.OF | RflagsBits.DF;
        s.Mxcsr = 0x1F80 | 0x6000 | 0x3F;
        rng.NextBytes(s.Scratch);
        rng.NextBytes(s.Stack);
        // x87/MMX: FCW with every exception masked (bit 6 reads as 1), TOP 5, C0..C3 and masked sticky flags, some tags.
        BitConverter.TryWriteBytes(s.Fx.AsSpan(0), (ushort)0x0E7F);
        BitConverter.TryWriteBytes(s.Fx.AsSpan(2), (ushort)(5 << 11 | 0x4721 & 0x477F));
        s.Fx[4] = 0xA5;
        for (int r = 0; r < 8; r++)
            rng.NextBytes(s.Fx.AsSpan(32 + 16 * r, 10));
        var before = s.Clone();
        native.Run([], s);
        Assert.Null(CpuSnapshot.Compare(before, s, 0));
    }

    [Fact]
    public void Sequence_runs_and_writes_memory()
    {
        using var arena = new TestArena();
        var native = new NativeExecutor(arena);
        var a = new Assembler(64);
        a.add(rax, rbx);
        a.mov(__qword_ptr[r15 + 8], rax);
        a.push(rax);
        var w = new ByteWriter();
        a.Assemble(w, arena.Base + TestArena.CodeOffset);
        var s = new CpuSnapshot { Rflags = 0x202, Mxcsr = 0x1F80 };
        s.Gpr[0] = 5;
        s.Gpr[3] = ulong.MaxValue;
        s.Gpr[4] = arena.Base + TestArena.InitialRspOffset;
        s.Gpr[15] = arena.Base + TestArena.ScratchBaseOffset;
        native.Run(w.Bytes.ToArray(), s);
        Assert.Equal(4UL, s.Gpr[0]);
        Assert.Equal(RflagsBits.CF, s.Rflags & RflagsBits.CF);
        Assert.Equal(4UL, BitConverter.ToUInt64(s.Scratch, (int)(TestArena.ScratchBaseOffset - TestArena.ScratchOffset + 8)));
        Assert.Equal(arena.Base + TestArena.InitialRspOffset - 8, s.Gpr[4]);
        Assert.Equal(4UL, BitConverter.ToUInt64(s.Stack, (int)(TestArena.InitialRspOffset - TestArena.StackOffset - 8)));
    }
}
