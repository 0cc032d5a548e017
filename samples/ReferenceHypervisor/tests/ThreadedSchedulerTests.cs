using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Iced.Intel;
using VmmKit.Devices;
using VmmKit.Ept;
using VmmKit.EventChannel;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using VmmKit.ReferenceHypervisor.Host;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.TestSupport;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The threaded scheduler (<see cref="SchedulerMode.Threaded"/>, Core/VcpuThread.cs): each vCPU on a host thread of its
/// own. Tiny Iced-assembled guests whose second vCPU is started by VCPUOP_initialise/VCPUOP_up in flat 32-bit mode show
/// that two vCPUs really run at once (one stays inside its exit on the host while the other keeps running), that LOCK'ed
/// read-modify-writes of both stay atomic, that an IPI wakes a halted vCPU on another thread, that no wake-up is lost
/// between a vCPU's last look and its wait, and that destroying a domain while both vCPUs run ends both threads.
/// </summary>
public class ThreadedSchedulerTests
{
    private const uint Load = 0x100000;
    private const uint ApCode = Load + 0x3000;
    private const uint Counter = 0x9000, Ready = 0x9004, Woke = 0x9008, ApDone = 0x900C, ApWaiting = 0x9080, Released = 0x9084;
    private const uint Gdt = 0xA000, Gdtr = 0xA100, Idtr = 0xA200, Idt = 0xA800;
    private const uint SharedXadd = 0x9010, SharedInc = 0x9014, SharedCas = 0x9018, Spinlock = 0x901C, Guarded = 0x9020;
    private const uint ApicPage = 0xFEE0_0000;
    private const byte Vector = 0x40;

    /// <summary>Where the AP continues with CS = 0x08, and its interrupt handler (fixed addresses: no label arithmetic in 32-bit code).</summary>
    private const uint ApFlat = ApCode + 0x400, ApHandler = ApCode + 0x800;

    private static (Machine Machine, Domain Domain) Build(Action<Assembler> bsp, Action<Assembler> ap, ulong budget = 50_000_000)
    {
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault())
        {
            MaxInstructionsPerVcpu = budget,
            Scheduling = SchedulerMode.Threaded,
        };
        var a = new Assembler(32);
        a.mov(esp, Load + 0x2000);
        bsp(a);
        a.cli();
        a.hlt();
        Assert.True(machine.TryCreateDomain(new DomainConfig("threads", Elf32ImageWriter.Write(Load, Assemble(a, Load), 0x8000, Load), 8 << 20,
            Vcpus: 2), out var d, out string e), e);
        var apCode = new Assembler(32);
        ap(apCode);
        Assert.True(d!.Physical.TryWrite(new GuestPhysicalAddress(ApCode), Assemble(apCode, ApCode), out _));
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(ApFlat), Assemble(HaltAfterSetUp(), ApFlat), out _));
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(ApHandler), Assemble(Handler(), ApHandler), out _));

        // A flat GDT (null, code 0x08, data 0x10) for the AP's interrupt gates, and an IDT whose vector 0x40 the AP fills.
        Span<ulong> gdt = [0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Gdt), MemoryMarshal.AsBytes(gdt), out _));
        Span<byte> gdtr = stackalloc byte[6];
        BitConverter.TryWriteBytes(gdtr, (ushort)23);
        BitConverter.TryWriteBytes(gdtr[2..], Gdt);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Gdtr), gdtr, out _));
        BitConverter.TryWriteBytes(gdtr, (ushort)(256 * 8 - 1));
        BitConverter.TryWriteBytes(gdtr[2..], Idt);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Idtr), gdtr, out _));

        var m = new GuestPage();
        var context = new VcpuHvmContext
        {
            Mode = VcpuHvmContext.Mode32,
            X86_32 = new VcpuHvmX86_32
            {
                Eip = ApCode, Esp = Load + 0x6000, Eflags = 2, Cr0 = 0x11,
                CsLimit = 0xFFFFF, DsLimit = 0xFFFFF, SsLimit = 0xFFFFF, EsLimit = 0xFFFFF, TrLimit = 0x67,
                CsAr = 0xC9B, DsAr = 0xC93, SsAr = 0xC93, EsAr = 0xC93, TrAr = 0x8B,
            },
        };
        MemoryMarshal.Write(m.Bytes, in context);
        Assert.Equal(0, CallVcpuOp(machine, d.Vcpus[0], m, VcpuOp.Initialise, 1));
        Assert.Equal(0, CallVcpuOp(machine, d.Vcpus[0], m, VcpuOp.Up, 1));
        return (machine, d);
    }

    internal static long CallVcpuOp(Machine machine, VirtualCpu caller, GuestPage memory, VcpuOp op, ulong vcpuid)
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.VcpuOp, Rdi = (ulong)op, Rsi = vcpuid };
        machine.Hypercalls.Dispatch(caller, ref regs, GuestX86Mode.Long64, 0, memory);
        return (long)regs.Rax;
    }

    internal static byte[] Assemble(Assembler a, uint at)
    {
        var s = new MemoryStream();
        a.Assemble(new StreamCodeWriter(s), at);
        return s.ToArray();
    }

    internal static uint ReadGuest(Domain d, uint address)
    {
        Assert.True(d.Physical.TryRead(new GuestPhysicalAddress(address), out uint value));
        return value;
    }

    /// <summary>Spins (PAUSE) until the dword at <paramref name="address"/> is at least <paramref name="value"/>.</summary>
    private static void WaitFor(Assembler a, uint address, uint value)
    {
        var again = a.CreateLabel();
        a.Label(ref again);
        a.pause();
        a.cmp(__dword_ptr[address], value);
        a.jb(again);
    }

    /// <summary><paramref name="count"/> LOCK XADDs of 1 to the counter at <paramref name="counter"/>.</summary>
    private static void CountUp(Assembler a, uint count, uint counter)
    {
        a.mov(ecx, count);
        var again = a.CreateLabel();
        a.Label(ref again);
        a.mov(eax, 1);
        a.@lock.xadd(__dword_ptr[counter], eax);
        a.dec(ecx);
        a.jnz(again);
    }

    /// <summary>
    /// The AP's interrupt set-up and halt: loads the flat GDT and moves to CS 0x08 by a far return to <see cref="ApFlat"/>
    /// (<see cref="HaltAfterSetUp"/>).
    /// </summary>
    private static void HaltUntilInterrupt(Assembler a)
    {
        a.lgdt(__[Gdtr]);
        a.push(0x08);
        a.push(ApFlat);
        a.retf();
    }

    /// <summary>
    /// Points IDT vector 0x40 at <see cref="ApHandler"/>, software-enables the local APIC, says it is ready, then STI; HLT.
    /// After the interrupt it halts with interrupts off (down).
    /// </summary>
    private static Assembler HaltAfterSetUp()
    {
        var a = new Assembler(32);
        a.mov(ax, 0x10);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(__word_ptr[Idt + (Vector * 8)], unchecked((ushort)ApHandler));
        a.mov(__word_ptr[Idt + (Vector * 8) + 2], 0x08);
        a.mov(__word_ptr[Idt + (Vector * 8) + 4], 0x8E00);   // present, DPL 0, 32-bit interrupt gate
        a.mov(__word_ptr[Idt + (Vector * 8) + 6], (ushort)(ApHandler >> 16));
        a.lidt(__[Idtr]);
        a.mov(__dword_ptr[ApicPage + 0xF0], 0x1FFu);          // SVR: APIC software-enabled
        a.mov(__dword_ptr[Ready], 1u);
        a.sti();
        a.hlt();
        a.mov(__dword_ptr[ApDone], 1u);
        a.cli();
        a.hlt();
        return a;
    }

    /// <summary>The interrupt handler: counts in <see cref="Woke"/>, EOIs, returns.</summary>
    private static Assembler Handler()
    {
        var a = new Assembler(32);
        a.@lock.inc(__dword_ptr[Woke]);
        a.mov(__dword_ptr[ApicPage + 0xB0], 0u);               // EOI
        a.iretd();
        return a;
    }

    [Fact]
    public void Two_vcpus_run_at_once_on_their_own_host_threads()
    {
        const uint Adds = 300_000;
        var (machine, d) = Build(
            bsp =>
            {
                CountUp(bsp, Adds, Counter);
                WaitFor(bsp, ApDone, 1);
            },
            ap =>
            {
                CountUp(ap, Adds, Counter + 4);
                // Still running (and so still exiting at its slice ends) until the host has held vCPU 0 once: an AP
                // that could finish first would leave a late hold nothing to wait for.
                WaitFor(ap, Released, 1);
                ap.mov(__dword_ptr[ApDone], 1u);
                ap.cli();
                ap.hlt();
            });
        using var owned = machine;
        int testThread = Environment.CurrentManagedThreadId;
        var threads = new ConcurrentDictionary<int, int>();
        using var apRan = new ManualResetEventSlim(false);
        int holding = 0;
        bool apRanWhileBspHeld = false;
        machine.Trace = (vcpu, exit) =>
        {
            threads[vcpu.Id] = Environment.CurrentManagedThreadId;
            if (vcpu.Id == 1 && Volatile.Read(ref holding) == 1)
                apRan.Set();
            // vCPU 0 stays inside one of its exits on the host until vCPU 1 has had an exit meanwhile: only possible
            // when the AP runs on another thread at the same time (on one thread this waits out its 20 s and fails).
            if (vcpu.Id == 0 && d.Vcpus[1].InstructionsRetired > 0 && Interlocked.CompareExchange(ref holding, 1, 0) == 0)
            {
                apRanWhileBspHeld = apRan.Wait(TimeSpan.FromSeconds(20));
                d.Physical.TryWrite(new GuestPhysicalAddress(Released), 1u);   // lets the AP finish
            }
        };
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.True(apRanWhileBspHeld, "vCPU 1 made no exit while vCPU 0 was held inside one");
        // Each vCPU its own counter (the shared ones: Locked_read_modify_writes_on_shared_memory_are_atomic_between_vcpu_threads).
        Assert.Equal(Adds, ReadGuest(d, Counter));
        Assert.Equal(Adds, ReadGuest(d, Counter + 4));
        Assert.Equal(2, threads.Count);
        Assert.NotEqual(threads[0], threads[1]);
        Assert.DoesNotContain(testThread, threads.Values);
        Assert.Empty(machine.Threads);   // every vCPU thread ended with the run
    }

    [Fact]
    public void Locked_read_modify_writes_on_shared_memory_are_atomic_between_vcpu_threads()
    {
        const uint Rounds = 50_000;
        var (machine, d) = Build(
            bsp =>
            {
                SharedRounds(bsp, Rounds);
                WaitFor(bsp, ApDone, 1);
            },
            ap =>
            {
                SharedRounds(ap, Rounds);
                ap.mov(__dword_ptr[ApDone], 1u);
                ap.cli();
                ap.hlt();
            });
        using var owned = machine;
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        // SDM Vol. 3A §9.1.2.2: each LOCK'ed read-modify-write (and XCHG with memory) is atomic, also against the
        // other vCPU's host thread; the spinlock is released by a plain store, as Linux does.
        Assert.Equal(2 * Rounds, ReadGuest(d, SharedXadd));
        Assert.Equal(2 * Rounds, ReadGuest(d, SharedInc));
        Assert.Equal(2 * Rounds, ReadGuest(d, SharedCas));
        Assert.Equal(2 * Rounds, ReadGuest(d, Guarded));
        Assert.Equal(0u, ReadGuest(d, Spinlock));
    }

    /// <summary>
    /// <paramref name="rounds"/> times: LOCK XADD, LOCK INC and a LOCK CMPXCHG loop on shared counters, then a plain
    /// increment under an XCHG spinlock released by a plain store.
    /// </summary>
    private static void SharedRounds(Assembler a, uint rounds)
    {
        a.mov(ecx, rounds);
        var again = a.CreateLabel();
        a.Label(ref again);
        a.mov(eax, 1);
        a.@lock.xadd(__dword_ptr[SharedXadd], eax);
        a.@lock.inc(__dword_ptr[SharedInc]);
        var cas = a.CreateLabel();
        a.Label(ref cas);
        a.mov(eax, __dword_ptr[SharedCas]);
        a.lea(edx, __[eax + 1]);
        a.@lock.cmpxchg(__dword_ptr[SharedCas], edx);
        a.jnz(cas);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.mov(eax, 1);
        a.xchg(__dword_ptr[Spinlock], eax);
        a.test(eax, eax);
        a.jnz(spin);
        a.inc(__dword_ptr[Guarded]);
        a.mov(__dword_ptr[Spinlock], 0u);
        a.dec(ecx);
        a.jnz(again);
    }

    [Fact]
    public void Tsc_reads_of_two_vcpus_on_their_own_threads_never_go_back()
    {
        // Linux's TSC sync check (arch/x86/kernel/tsc_sync.c, check_tsc_warp): under a spinlock each CPU reads the last
        // TSC any CPU read, reads its own and stores it; a read below the previous one is a warp. Both vCPUs run it at
        // once, reading the TSC by RDTSC, RDTSCP and RDMSR IA32_TSC in turn; RDTSCP's ECX must be the IA32_TSC_AUX each
        // wrote (its vCPU id + 1).
        const uint Rounds = 20_000;
        var (machine, d) = Build(
            bsp =>
            {
                WarpCheck(bsp, Rounds, 1);
                WaitFor(bsp, ApDone, 1);
            },
            ap =>
            {
                WarpCheck(ap, Rounds, 2);
                ap.mov(__dword_ptr[ApDone], 1u);
                ap.cli();
                ap.hlt();
            },
            budget: 200_000_000);
        using var owned = machine;
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(0u, ReadGuest(d, AuxBad));
        Assert.True(ReadGuest(d, Reads) >= 2 * Rounds);
        // The check means something only when the reads of the two vCPUs interleave (the guest goes on until they have).
        Assert.True(ReadGuest(d, Handoffs) >= MinHandoffs, $"only {ReadGuest(d, Handoffs)} hand-offs between the vCPUs");
        Assert.Equal(0u, ReadGuest(d, Warps));
    }

    private const uint WarpLock = 0x9030, LastTsc = 0x9038, LastReader = 0x9040, Warps = 0x9044, Handoffs = 0x9048, Reads = 0x904C,
        AuxBad = 0x9050;

    /// <summary>
    /// <see cref="Tsc_reads_of_two_vcpus_on_their_own_threads_never_go_back"/>'s loop for the vCPU that calls itself
    /// <paramref name="me"/> (1 or 2, also written to IA32_TSC_AUX): <paramref name="rounds"/> locked TSC reads.
    /// </summary>
    private static void WarpCheck(Assembler a, uint rounds, uint me)
    {
        a.mov(ecx, 0xC000_0103u);                          // IA32_TSC_AUX = me
        a.mov(eax, me);
        a.xor(edx, edx);
        a.wrmsr();
        a.mov(ebp, rounds);
        var spin = a.CreateLabel();
        var viaRdtscp = a.CreateLabel();
        var viaMsr = a.CreateLabel();
        var read = a.CreateLabel();
        var noWarp = a.CreateLabel();
        var same = a.CreateLabel();
        var warp = a.CreateLabel();
        a.Label(ref spin);
        a.mov(eax, 1);
        a.xchg(__dword_ptr[WarpLock], eax);
        a.test(eax, eax);
        a.jnz(spin);
        a.mov(esi, __dword_ptr[LastTsc]);                  // prev = last_tsc
        a.mov(edi, __dword_ptr[LastTsc + 4]);
        a.mov(ebx, ebp);
        a.and(ebx, 3);
        a.cmp(ebx, 1);
        a.je(viaRdtscp);
        a.cmp(ebx, 2);
        a.je(viaMsr);
        a.rdtsc();
        a.jmp(read);
        a.Label(ref viaRdtscp);
        a.rdtscp();
        a.cmp(ecx, me);
        a.je(read);
        a.inc(__dword_ptr[AuxBad]);
        a.jmp(read);
        a.Label(ref viaMsr);
        a.mov(ecx, 0x10u);                                 // IA32_TSC
        a.rdmsr();
        a.Label(ref read);
        a.mov(__dword_ptr[LastTsc], eax);                  // last_tsc = now
        a.mov(__dword_ptr[LastTsc + 4], edx);
        a.inc(__dword_ptr[Reads]);
        a.cmp(__dword_ptr[LastReader], me);
        a.je(same);
        a.inc(__dword_ptr[Handoffs]);
        a.mov(__dword_ptr[LastReader], me);
        a.Label(ref same);
        a.cmp(edi, edx);                                   // prev > now: a warp
        a.jb(noWarp);
        a.ja(warp);
        a.cmp(esi, eax);
        a.jbe(noWarp);
        a.Label(ref warp);
        a.inc(__dword_ptr[Warps]);
        a.Label(ref noWarp);
        a.mov(__dword_ptr[WarpLock], 0u);
        a.dec(ebp);
        a.jnz(spin);
        // Rounds done, but the check means something only when the reads interleave: on a loaded host one vCPU's thread
        // may run all its rounds before the other's starts, so both go on a round at a time until they have.
        var done = a.CreateLabel();
        a.cmp(__dword_ptr[Handoffs], MinHandoffs);
        a.jae(done);
        a.mov(ebp, 1);
        a.jmp(spin);
        a.Label(ref done);
        a.nop();
    }

    private const uint MinHandoffs = 10;

    [Fact]
    public void A_send_to_a_masked_port_wakes_the_vcpu_polling_it_on_another_thread()
    {
        // Linux's PV spinlock (xen_qlock_wait) blocks in SCHEDOP_poll on its masked kicker port; the unlocking CPU's
        // EVTCHNOP_send raises no upcall (the port is masked) but must still wake the poller (Xen's evtchn_check_pollers).
        // The send comes as vCPU 0's hypercall from the test hook, on the AP's thread once it is about to wait; a lost
        // wake-up leaves the AP blocked until the BSP's budget crashes the domain.
        const uint PollArg = 0x9060, PollPorts = 0x9070;
        var (machine, d) = Build(
            bsp => WaitFor(bsp, ApDone, 1),
            ap =>
            {
                ap.mov(eax, (uint)HypercallNumber.SchedOp);
                ap.mov(ebx, 3u);                                   // SCHEDOP_poll
                ap.mov(ecx, PollArg);
                ap.vmcall();
                ap.mov(__dword_ptr[ApDone], 1u);
                ap.cli();
                ap.hlt();
            },
            budget: 20_000_000);
        using var owned = machine;
        var bind = new EvtchnBindIpi { Vcpu = 1 };
        Assert.Equal(0, machine.Events.BindIpi(d.Events, ref bind));
        uint port = bind.Port;
        machine.Memory.GetFrame(d.SharedInfoFrame)[2560 + (int)(port / 8)] |= (byte)(1 << (int)(port % 8));   // evtchn_mask (64-bit layout)
        Assert.True(machine.Events.IsMasked(d.Events, port));
        Span<uint> poll = [PollPorts, 1, 0, 0];                    // compat sched_poll: ports, nr_ports, timeout 0 (none)
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(PollArg), MemoryMarshal.AsBytes(poll), out _));
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(PollPorts), BitConverter.GetBytes(port), out _));
        int sent = 0;
        long rc = -1;
        machine.BeforeVcpuWait = v =>
        {
            if (v.Id == 1 && v.IsBlocked && v.Timers.Polling && Interlocked.Exchange(ref sent, 1) == 0)
            {
                var m = new GuestPage();
                MemoryMarshal.Write(m.Bytes, new EvtchnSend { Port = port });
                var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.EventChannelOp, Rdi = (ulong)EventChannelOp.Send };
                machine.Hypercalls.Dispatch(d.Vcpus[0], ref regs, GuestX86Mode.Long64, 0, m);
                rc = (long)regs.Rax;
            }
        };
        machine.Run();
        Assert.Equal(1, sent);
        Assert.Equal(0, rc);
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(1u, ReadGuest(d, ApDone));
    }

    [Fact]
    public void Unless_one_is_chosen_a_guest_with_several_vcpus_makes_the_machine_threaded_and_one_vcpu_guests_keep_it_round_robin()
    {
        // VMMKIT_SCHEDULER (or --scheduler) wins; this test runs under whatever the environment chose.
        var chosen = Machine.DefaultScheduling;
        byte[] kernel = Elf32ImageWriter.Write(Load, [0xFA, 0xF4], 0x1000, Load);   // CLI; HLT
        SchedulerMode For(int vcpus, IProcessorProvider processors, int? second = null)
        {
            using var machine = new Machine(32 << 20, processors);
            Assert.True(machine.TryCreateDomain(new DomainConfig("first", kernel, 8 << 20, Vcpus: vcpus), out _, out string e), e);
            if (second is int n)
                Assert.True(machine.TryCreateDomain(new DomainConfig("second", kernel, 8 << 20, Vcpus: n), out _, out e), e);
            machine.Run();
            return machine.Scheduling;
        }

        Assert.Equal(chosen ?? SchedulerMode.Threaded, For(2, ProcessorProviders.Create(VmmKit.Vmx.Emulator.ExecutionTier.Interpreter)));
        Assert.Equal(chosen ?? SchedulerMode.RoundRobin, For(1, ProcessorProviders.Create(VmmKit.Vmx.Emulator.ExecutionTier.Interpreter)));
        // A later SMP guest moves a machine the guests chose round-robin for to threaded; a later one-vCPU guest does not
        // move it back.
        Assert.Equal(chosen ?? SchedulerMode.Threaded, For(1, ProcessorProviders.Create(VmmKit.Vmx.Emulator.ExecutionTier.Interpreter), second: 2));
        Assert.Equal(chosen ?? SchedulerMode.Threaded, For(2, ProcessorProviders.Create(VmmKit.Vmx.Emulator.ExecutionTier.Interpreter), second: 1));
        Assert.Equal(chosen ?? SchedulerMode.RoundRobin, For(2, ProcessorProviders.Create(VmmKit.Vmx.Emulator.ExecutionTier.LockStep), second: 2));
        // Lock-step's undo and replay of stores assume one processor writes the guest's memory at a time.
        Assert.Equal(chosen ?? SchedulerMode.RoundRobin, For(2, ProcessorProviders.Create(VmmKit.Vmx.Emulator.ExecutionTier.LockStep)));
        // An explicit choice wins over the domain's vCPU count.
        using var explicitly = new Machine(32 << 20, ProcessorProviders.CreateDefault()) { Scheduling = SchedulerMode.RoundRobin };
        Assert.True(explicitly.TryCreateDomain(new DomainConfig("smp", kernel, 8 << 20, Vcpus: 2), out _, out string error), error);
        Assert.Equal(SchedulerMode.RoundRobin, explicitly.Scheduling);
    }

    [Fact]
    public void An_ipi_wakes_a_halted_vcpu_on_another_thread()
    {
        var (machine, d) = Build(
            bsp =>
            {
                WaitFor(bsp, ApWaiting, 1);                 // the AP is halted and its thread about to wait (the hook)
                bsp.mov(__dword_ptr[ApicPage + 0x310], 1u << 24);
                bsp.mov(__dword_ptr[ApicPage + 0x300], 0x4000u | Vector);   // fixed IPI, vector 0x40, to APIC 1
                WaitFor(bsp, ApDone, 1);
            },
            HaltUntilInterrupt);
        using var owned = machine;
        int apWaits = 0;
        machine.BeforeVcpuWait = v =>
        {
            if (v.Id == 1 && v.IsBlocked && ReadGuest(d, Ready) == 1)
            {
                Interlocked.Increment(ref apWaits);
                Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(ApWaiting), BitConverter.GetBytes(1u), out _));
            }
        };
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);
        Assert.Equal(1u, ReadGuest(d, Woke));
        Assert.True(apWaits > 0, "the AP never waited on its thread");
    }

    [Fact]
    public void An_interrupt_sent_between_the_last_look_and_the_wait_still_wakes_the_vcpu()
    {
        // The BSP sends nothing: the only interrupt comes from the test hook, on the AP's thread, after the AP found
        // nothing pending and before it waits. A lost wake-up leaves the AP halted until the BSP's budget crashes the domain.
        var (machine, d) = Build(bsp => WaitFor(bsp, ApDone, 1), HaltUntilInterrupt, budget: 20_000_000);
        using var owned = machine;
        int sent = 0;
        machine.BeforeVcpuWait = v =>
        {
            if (v.Id == 1 && v.IsBlocked && v.IsUp && ReadGuest(d, Ready) == 1 && Interlocked.Exchange(ref sent, 1) == 0)
                v.Apic.Receive(ApicInterruptCommand.FromIcr((1ul << 56) | 0x4000 | Vector, false));
        };
        machine.Run();
        Assert.Equal(1, sent);
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(1u, ReadGuest(d, Woke));
    }

    [Fact]
    public void Destroying_a_domain_while_both_vcpus_run_ends_both_threads()
    {
        var (machine, d) = Build(
            bsp =>
            {
                var forever = bsp.CreateLabel();
                bsp.Label(ref forever);
                bsp.@lock.inc(__dword_ptr[Counter]);
                bsp.jmp(forever);
            },
            ap =>
            {
                var forever = ap.CreateLabel();
                ap.Label(ref forever);
                ap.@lock.inc(__dword_ptr[Counter + 4]);
                ap.jmp(forever);
            },
            budget: 0);
        using var owned = machine;
        var seen = new ConcurrentDictionary<int, VcpuThread>();
        machine.Trace = (vcpu, _) => seen.TryAdd(vcpu.Id, vcpu.Thread!);
        var host = new DestroyingHost(machine, d, () => seen.Count == 2);
        machine.Host = host;
        machine.Run();
        Assert.True(host.Destroyed);
        Assert.Equal(2, seen.Count);
        Assert.All(seen.Values, t => Assert.False(t.IsAlive));
        Assert.Empty(machine.Domains);
        Assert.Empty(machine.Threads);
    }

    [Fact]
    public void A_vcpu_sending_inits_while_the_control_domain_stops_the_world_does_not_hang_the_machine()
    {
        // The AP sends INIT after INIT to the boot vCPU (down once the first is taken). Each INIT is posted to the boot
        // vCPU's thread and the sender waits for it, inside its slice; meanwhile the scheduler stops the world before it
        // serves the control domain, gate by gate in thread order, so it may hold the boot vCPU's gate while it waits
        // for the AP's. A sender that kept waiting then waited for a thread that cannot run: every domain stopped.
        const int Inits = 3000;
        var (machine, d) = Build(
            _ => { },   // cli; hlt: the boot vCPU goes down at once (the AP, up, keeps the domain running)
            ap =>
            {
                ap.mov(ecx, Inits);
                var again = ap.CreateLabel();
                ap.Label(ref again);
                ap.mov(__dword_ptr[ApicPage + 0x310], 0u);        // ICR high: APIC ID 0
                ap.mov(__dword_ptr[ApicPage + 0x300], 0xC500u);   // ICR low: INIT, level-triggered assert
                ap.dec(ecx);
                ap.jnz(again);
                ap.mov(__dword_ptr[ApDone], 1u);
                ap.cli();
                ap.hlt();
            });
        var host = new PollingHost();
        machine.Host = host;
        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(60), "INITs while the world stops");   // leaks the machine on a hang
        using var owned = machine;
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(1u, ReadGuest(d, ApDone));
        Assert.False(d.Vcpus[0].IsInitialised);
        Assert.True(host.Polls > 0);
    }

    /// <summary>A control domain with nothing to ask: the scheduler stops the world to poll it, and stops when the guests are done.</summary>
    private sealed class PollingHost : IMachineHost
    {
        private int _polls;

        public int Polls => Volatile.Read(ref _polls);

        public bool HoldsWork => false;

        public bool Poll()
        {
            Interlocked.Increment(ref _polls);
            return false;
        }

        public bool WaitForWork() => false;
    }

    /// <summary>A control domain that destroys the guest (XEN_DOMCTL_destroydomain's path) once both vCPUs have run, then stops the host.</summary>
    private sealed class DestroyingHost(Machine machine, Domain domain, Func<bool> bothRan) : IMachineHost
    {
        public bool Destroyed { get; private set; }

        public bool HoldsWork => false;

        public bool Poll()
        {
            if (Destroyed || !bothRan())
                return false;
            machine.RemoveDomain(domain);
            Destroyed = true;
            return true;
        }

        public bool WaitForWork() => !Destroyed;
    }
}
