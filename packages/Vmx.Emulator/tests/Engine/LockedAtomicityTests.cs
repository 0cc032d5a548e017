using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

/// <summary>
/// SDM Vol. 3A §9.1.2.2: LOCK'ed read-modify-writes (and XCHG with memory) are atomic against other processors. Two
/// <see cref="EmulatedProcessor"/>s on two host threads share guest memory and update shared counters; every total
/// must be exact.
/// </summary>
public unsafe class LockedAtomicityTests
{
    private const ulong RamPages = 64;
    private const uint Rounds = 200_000;
    private const uint Xadd = 0x9000, Inc16 = 0x9010, Add8 = 0x9020, Cas = 0x9030, Cas8b = 0x9040;
    private const uint Spinlock = 0x9050, Guarded = 0x9060, Bts = 0x9070;
    private const uint Split = 0x9FFE; // a dword across a page boundary: the process-wide lock of LockedRmw

    private sealed class Writer : CodeWriter
    {
        public readonly List<byte> Bytes = new();

        public override void WriteByte(byte value) => Bytes.Add(value);
    }

    private static void Rounds32(Assembler a)
    {
        a.mov(ecx, Rounds);
        var again = a.CreateLabel();
        a.Label(ref again);
        a.mov(eax, 1);
        a.@lock.xadd(__dword_ptr[Xadd], eax);
        a.@lock.inc(__word_ptr[Inc16]);
        a.@lock.add(__byte_ptr[Add8], 3);
        a.@lock.add(__dword_ptr[Split], 1);
        var cas = a.CreateLabel();
        a.Label(ref cas);
        a.mov(eax, __dword_ptr[Cas]);
        a.lea(edx, __[eax + 1]);
        a.@lock.cmpxchg(__dword_ptr[Cas], edx);
        a.jnz(cas);
        // CMPXCHG8B loop: add 1 to a qword whose low half overflows into the high half.
        a.mov(eax, __dword_ptr[Cas8b]);
        a.mov(edx, __dword_ptr[Cas8b + 4]);
        var cas8 = a.CreateLabel();
        a.Label(ref cas8);
        a.mov(ebx, eax);
        a.mov(esi, edx);
        a.add(ebx, 0x4000_0000);
        a.adc(esi, 0);
        a.push(ecx);
        a.mov(ecx, esi);
        a.@lock.cmpxchg8b(__qword_ptr[Cas8b]);
        a.pop(ecx);
        a.jnz(cas8);
        // A spinlock taken with XCHG (locked implicitly) and released with a plain store, as Linux does.
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.mov(eax, 1);
        a.xchg(__dword_ptr[Spinlock], eax);
        a.test(eax, eax);
        a.jnz(spin);
        a.inc(__dword_ptr[Guarded]);
        a.mov(__dword_ptr[Spinlock], 0u);
        // Bit string with a register offset: each processor owns bit 0 or 33 and toggles it twice.
        a.@lock.btc(__dword_ptr[Bts], ebp);
        a.@lock.btc(__dword_ptr[Bts], ebp);
        a.@lock.bts(__dword_ptr[Bts + 8], ebp);
        a.dec(ecx);
        a.jnz(again);
        a.hlt();
    }

    [Fact]
    public void Locked_read_modify_writes_are_atomic_between_processors_on_two_host_threads()
    {
        using var memory = new MachineMemory(8UL << 20);
        using var ept = new EptTables(memory, new FrameOwner(1));
        MachineFrameNumber first = memory.AllocateContiguous(new FrameOwner(1), RamPages);
        ept.Map(new GuestPhysicalAddress(0), first, RamPages, EptAccess.Read | EptAccess.Write | EptAccess.Execute);
        byte* ram = memory.GetFramePointer(first);
        var w = new Writer();
        var asm = new Assembler(32);
        Rounds32(asm);
        asm.Assemble(w, 0x1000);
        w.Bytes.ToArray().CopyTo(new Span<byte>(ram + 0x1000, w.Bytes.Count));

        var exits = new VmExit[2];
        var cpus = new EmulatedProcessor[2];
        var threads = new Thread[2];
        try
        {
            for (int k = 0; k < 2; k++)
            {
                int id = k;
                var cpu = cpus[k] = new EmulatedProcessor(memory);
                // Lock-step undoes a translated block's stores and replays them in the interpreter: with another
                // processor writing the same memory meanwhile the comparison is meaningless (and the undo is visible to
                // it), so this test runs the translator alone where the suite asks for lock-step.
                if (cpu.ExecutionTier == ExecutionTier.LockStep) cpu.ExecutionTier = ExecutionTier.Translator;
                var vmcs = new Vmcs();
                VmcsBuilder.SetPvh32Guest(vmcs, EmulatedCapabilities.Create(), ept.Pointer, 0x1000);
                VmcsBuilder.SetHostState(vmcs, EmulatedHostState.Default);
                vmcs.Write(VmcsField.GuestRsp, 0x7000UL - 0x800UL * (ulong)id);
                cpu.Registers.Rbp = id == 0 ? 0UL : 33UL; // the bit each processor toggles
                threads[k] = new Thread(() => exits[id] = cpu.Run(vmcs));
            }
            foreach (var t in threads) t.Start();
            bool halted = threads[0].Join(TimeSpan.FromMinutes(2)) & threads[1].Join(TimeSpan.FromMinutes(2));
            if (!halted)
            {
                // A lost update of the spinlock leaves a processor spinning: kick both out before the memory goes.
                foreach (var c in cpus) c.RequestExit();
                foreach (var t in threads) t.Join();
            }
            Assert.True(halted, "a processor did not halt");
        }
        finally
        {
            foreach (var c in cpus) c?.Dispose();
        }

        Assert.Equal(VmxExitReason.Hlt, exits[0].Reason);
        Assert.Equal(VmxExitReason.Hlt, exits[1].Reason);
        Assert.Equal(2 * Rounds, *(uint*)(ram + Xadd));
        Assert.Equal(unchecked((ushort)(2 * Rounds)), *(ushort*)(ram + Inc16));
        Assert.Equal(unchecked((byte)(6 * Rounds)), ram[Add8]);
        Assert.Equal(2 * Rounds, *(uint*)(ram + Split));
        Assert.Equal(2 * Rounds, *(uint*)(ram + Cas));
        Assert.Equal(2UL * Rounds * 0x4000_0000UL, *(ulong*)(ram + Cas8b));
        Assert.Equal(2 * Rounds, *(uint*)(ram + Guarded));
        Assert.Equal(0u, *(uint*)(ram + Spinlock));
        Assert.Equal(0UL, *(ulong*)(ram + Bts));
        Assert.Equal(1UL | (1UL << 33), *(ulong*)(ram + Bts + 8));
    }
}
