using System.Runtime.InteropServices;
using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Waits between vCPU threads on the threaded scheduler that a hostile guest can close into a circle: a vCPU that waits
/// for a sibling inside its slice must do the work the sibling waits for meanwhile, or both wait forever (and with a
/// control domain, every domain stops: the world stop waits for their gates).
/// </summary>
public sealed class ConcurrencyReviewTests
{
    private const uint Load = 0x100000;
    private const uint Parked = Load + 0x3C00;
    private const uint Context = 0x9100, ParkedContext = 0x9400, Result0 = 0x9000, Result1 = 0x9004, Result2 = 0x9008;
    private const uint Sentinel = 0xDEAD;
    private const uint ApicPage = 0xFEE0_0000;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A domain on the threaded scheduler: vCPU 0 runs <paramref name="bsp"/>, vCPU <c>i + 1</c> runs
    /// <paramref name="aps"/>[i] at <see cref="ApCode"/>(i) (flat 32-bit, paging off), each then halting with interrupts
    /// off. The vCPUs named in <paramref name="started"/> are started by VCPUOP_initialise/VCPUOP_up before the run; the
    /// others stay down and not initialised.
    /// </summary>
    private static (Machine Machine, Domain Domain) Build(Action<Assembler> bsp, Action<Assembler>[] aps, params int[] started)
    {
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault())
        {
            MaxInstructionsPerVcpu = 50_000_000,
            Scheduling = SchedulerMode.Threaded,
        };
        var a = new Assembler(32);
        a.mov(esp, Load + 0x2000);
        bsp(a);
        a.cli();
        a.hlt();
        Assert.True(machine.TryCreateDomain(new DomainConfig("review", Elf32ImageWriter.Write(Load, ThreadedSchedulerTests.Assemble(a, Load), 0x8000, Load), 8 << 20,
            Vcpus: 1 + aps.Length), out var d, out string e), e);
        for (int i = 0; i < aps.Length; i++)
        {
            var ap = new Assembler(32);
            aps[i](ap);
            ap.cli();
            ap.hlt();
            Assert.True(d!.Physical.TryWrite(new GuestPhysicalAddress(ApCode(i)), ThreadedSchedulerTests.Assemble(ap, ApCode(i)), out _));
        }

        var parked = new Assembler(32);
        parked.cli();
        parked.hlt();
        Assert.True(d!.Physical.TryWrite(new GuestPhysicalAddress(Parked), ThreadedSchedulerTests.Assemble(parked, Parked), out _));

        var m = new GuestPage();
        foreach (int id in started)
        {
            MemoryMarshal.Write(m.Bytes, SmpTests.Flat32(ApCode(id - 1), Load + 0x6000));
            Assert.Equal(0, ThreadedSchedulerTests.CallVcpuOp(machine, d.Vcpus[0], m, VcpuOp.Initialise, (ulong)id));
            Assert.Equal(0, ThreadedSchedulerTests.CallVcpuOp(machine, d.Vcpus[0], m, VcpuOp.Up, (ulong)id));
        }

        return (machine, d);
    }

    /// <summary>Where the code of vCPU <c>index + 1</c> starts.</summary>
    private static uint ApCode(int index) => Load + 0x3000 + (uint)(index * 0x400);

    /// <summary>Writes a flat 32-bit <c>vcpu_hvm_context</c> at <paramref name="eip"/> to guest address <paramref name="at"/>.</summary>
    private static void WriteContext(Domain d, uint at, uint eip)
    {
        var context = SmpTests.Flat32(eip, Load + 0x6000);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(at), MemoryMarshal.AsBytes(new ReadOnlySpan<VcpuHvmContext>(in context)), out _));
    }

    /// <summary>VCPUOP_initialise(<paramref name="vcpuid"/>, <paramref name="context"/>) from 32-bit code; the result to <paramref name="result"/>.</summary>
    private static void Initialise(Assembler a, uint vcpuid, uint context, uint result)
    {
        a.mov(eax, (uint)HypercallNumber.VcpuOp);
        a.mov(ebx, (uint)VcpuOp.Initialise);
        a.mov(ecx, vcpuid);
        a.mov(edx, context);
        a.vmcall();
        a.mov(__dword_ptr[result], eax);
    }

    /// <summary><see cref="Initialise"/>, then VCPUOP_up of the same vCPU.</summary>
    private static void InitialiseAndUp(Assembler a, uint vcpuid, uint context, uint result)
    {
        Initialise(a, vcpuid, context, result);
        a.mov(eax, (uint)HypercallNumber.VcpuOp);
        a.mov(ebx, (uint)VcpuOp.Up);
        a.mov(ecx, vcpuid);
        a.vmcall();
    }

    [Fact]
    public void A_vcpu_initialising_a_sibling_that_waits_for_it_with_an_init_does_not_hang_the_domain()
    {
        // vCPU 0 sends INIT to all including itself: the bus delivers to vCPU 0 first (it goes down and is no longer
        // initialised, at once, on its own thread), then posts the INIT to vCPU 1 and waits, inside its slice, for vCPU 1's
        // thread to do it. vCPU 1 is meanwhile inside VCPUOP_initialise of vCPU 0: it finds vCPU 0 not initialised and waits
        // for vCPU 0's slice to end. A wait that did not do the INIT posted to it waited for a vCPU that waited for it.
        var (machine, d) = Build(
            bsp => bsp.mov(__dword_ptr[ApicPage + 0x300], 0x8C500u),   // ICR low: INIT, level assert, all including self
            [ap => Initialise(ap, 0, ParkedContext, Result1)],
            1);
        WriteContext(d, ParkedContext, Parked);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Result1), Sentinel));
        var vcpu0 = d.Vcpus[0];
        using var apInCall = new ManualResetEventSlim(false);
        machine.Trace = (vcpu, exit) =>
        {
            if (vcpu.Id == 1 && exit.Reason == VmxExitReason.Vmcall)
            {
                // vCPU 1 is at its VMCALL: vCPU 0 may send; the call goes on once vCPU 0 has taken its own INIT.
                apInCall.Set();
                var waited = System.Diagnostics.Stopwatch.StartNew();
                while (vcpu0.IsInitialised && waited.Elapsed < Limit)
                    Thread.Yield();
            }
            else if (vcpu.Id == 0 && exit.Reason == VmxExitReason.EptViolation)
            {
                apInCall.Wait(Limit);   // the ICR write waits until vCPU 1 is inside its call
            }
        };

        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(60), "VCPUOP_initialise against an INIT");   // leaks the machine on a hang
        using var owned = machine;
        Assert.True(apInCall.IsSet);
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);   // both vCPUs took their INIT: all down
        Assert.Equal(Sentinel, ThreadedSchedulerTests.ReadGuest(d, Result1));              // vCPU 1 took its INIT inside the call: it never got back to the guest
        // Whether the call loaded vCPU 0's context (vCPU 0's slice was over first) or gave up (-EAGAIN: vCPU 1, down
        // meanwhile, stopped waiting first) is a race; either way vCPU 0 is down.
        Assert.False(vcpu0.IsUp);
    }

    [Fact]
    public void Two_vcpus_initialising_each_other_after_an_init_each_took_while_waiting_do_not_hang_the_domain()
    {
        // vCPU 0 calls VCPUOP_initialise of vCPU 1, not initialised, and waits for vCPU 1's slice to end. Meanwhile vCPU 2
        // initialises vCPU 1 and brings it up, and sends INIT to vCPU 0, which vCPU 0 takes inside its wait (it does the
        // work posted to it): vCPU 0 is no longer initialised. vCPU 1, now running, calls VCPUOP_initialise of vCPU 0 and
        // waits for vCPU 0's slice to end. Each waited for the other's slice to end, inside its own: forever.
        var (machine, d) = Build(
            bsp => Initialise(bsp, 1, Context, Result0),
            [
                b => Initialise(b, 0, ParkedContext, Result1),
                c =>
                {
                    InitialiseAndUp(c, 1, Context, Result2);
                    c.mov(__dword_ptr[ApicPage + 0x310], 0u);          // ICR high: APIC ID 0
                    c.mov(__dword_ptr[ApicPage + 0x300], 0xC500u);     // ICR low: INIT, level assert
                },
            ],
            2);
        WriteContext(d, Context, ApCode(0));
        WriteContext(d, ParkedContext, Parked);
        foreach (uint result in (ReadOnlySpan<uint>)[Result0, Result1, Result2])
            Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(result), Sentinel));
        var vcpu0 = d.Vcpus[0];
        using var aLooked = new ManualResetEventSlim(false);
        using var bInCall = new ManualResetEventSlim(false);
        machine.InitialiseLooked = (caller, target) =>
        {
            if (caller.Id == 0)
            {
                // vCPU 0 found vCPU 1 not initialised: it waits for vCPU 1's slice once vCPU 1 runs, inside its call.
                aLooked.Set();
                bInCall.Wait(Limit);
            }
        };
        machine.Trace = (vcpu, exit) =>
        {
            if (exit.Reason != VmxExitReason.Vmcall)
                return;
            if (vcpu.Id == 2)
            {
                aLooked.Wait(Limit);   // vCPU 2 initialises vCPU 1 only after vCPU 0 found it not initialised
            }
            else if (vcpu.Id == 1)
            {
                // vCPU 1 is in its slice, at its call: it goes on once vCPU 0 has taken vCPU 2's INIT.
                bInCall.Set();
                var waited = System.Diagnostics.Stopwatch.StartNew();
                while (vcpu0.IsInitialised && waited.Elapsed < Limit)
                    Thread.Yield();
            }
        };

        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(60), "VCPUOP_initialise of each other");   // leaks the machine on a hang
        using var owned = machine;
        Assert.True(aLooked.IsSet && bInCall.IsSet);
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);
        Assert.Equal(0u, ThreadedSchedulerTests.ReadGuest(d, Result2));         // vCPU 2 initialised vCPU 1
        Assert.Equal(Sentinel, ThreadedSchedulerTests.ReadGuest(d, Result0));   // vCPU 0 took the INIT inside its call: it never got back to the guest
        Assert.Equal(0u, ThreadedSchedulerTests.ReadGuest(d, Result1));         // vCPU 1 initialised vCPU 0 once vCPU 0's slice was over
        Assert.True(vcpu0.IsInitialised);
    }

    [Fact]
    public void A_vcpu_another_initialised_while_the_call_waited_is_refused_with_eexist()
    {
        // vCPU 0 calls VCPUOP_initialise of vCPU 1, finds it not initialised, and is held there while vCPU 2 initialises
        // vCPU 1, brings it up and vCPU 1 runs and halts. Xen checks is_initialised under the domain lock, so of two calls
        // one initialises and the other gets -EEXIST; a call that did not look again loaded its context over the first.
        const uint Marker = 0x9010;
        var (machine, d) = Build(
            bsp => Initialise(bsp, 1, ParkedContext, Result0),
            [
                b => b.mov(__dword_ptr[Marker], 1u),
                c =>
                {
                    InitialiseAndUp(c, 1, Context, Result2);
                },
            ],
            2);
        WriteContext(d, Context, ApCode(0));
        WriteContext(d, ParkedContext, Parked);
        foreach (uint result in (ReadOnlySpan<uint>)[Result0, Result2])
            Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(result), Sentinel));
        var vcpu1 = d.Vcpus[1];
        using var aLooked = new ManualResetEventSlim(false);
        machine.InitialiseLooked = (caller, target) =>
        {
            if (caller.Id != 0)
                return;
            aLooked.Set();
            var waited = System.Diagnostics.Stopwatch.StartNew();
            while ((ThreadedSchedulerTests.ReadGuest(d, Marker) == 0 || vcpu1.IsUp) && waited.Elapsed < Limit)
                Thread.Yield();   // until vCPU 1 ran vCPU 2's context and went down
        };
        machine.Trace = (vcpu, exit) =>
        {
            if (vcpu.Id == 2 && exit.Reason == VmxExitReason.Vmcall)
                aLooked.Wait(Limit);
        };

        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(60), "VCPUOP_initialise twice");
        using var owned = machine;
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(1u, ThreadedSchedulerTests.ReadGuest(d, Marker));
        Assert.Equal(0u, ThreadedSchedulerTests.ReadGuest(d, Result2));
        Assert.Equal(unchecked((uint)XenErrno.EEXIST.Negated()), ThreadedSchedulerTests.ReadGuest(d, Result0));
        Assert.NotEqual((ulong)Parked, vcpu1.Vmcs.Read(VmcsField.GuestRip));   // not reloaded with vCPU 0's context
    }

    [Theory]
    [InlineData(VcpuOp.RegisterRunstateMemoryArea)]
    [InlineData(VcpuOp.RegisterVcpuTimeMemoryArea)]
    public void Registering_a_siblings_area_writes_it_once_through_the_callers_memory(VcpuOp op)
    {
        // Xen's do_vcpu_op writes the area at once with __copy_to_guest, through the address space of the caller
        // (current), whichever vCPU it names. Through the named vCPU's own accessor the caller's thread used that vCPU's
        // translation cache (one thread's alone: GuestPhysicalMemory) while the vCPU ran and used it on its own thread.
        const ulong Area = 0x100, GuestRam = 0x100;
        using var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
        var d = SiblingDomain(machine, GuestRam);
        var caller = new GuestBuffer(4096);
        caller.Bytes.AsSpan((int)Area, 48).Fill(0xFF);
        MemoryMarshal.Write(caller.Bytes, Area);   // the argument at 0: the area's address
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.VcpuOp, Rdi = (ulong)op, Rsi = 1, Rdx = 0 };
        machine.Hypercalls.Dispatch(d.Vcpus[0], ref regs, GuestX86Mode.Long64, 0, caller);

        Assert.Equal(0, (long)regs.Rax);
        Assert.False(caller.Bytes.AsSpan((int)Area, 8).SequenceEqual(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }),
            "the area was not written through the caller's memory");
        Span<byte> ram = stackalloc byte[48];
        Assert.True(d.Physical.TryRead(new GuestPhysicalAddress(GuestRam), ram, out _));
        Assert.True(ram.IndexOfAnyExcept((byte)0xEE) < 0, "the area was written through vCPU 1's own accessor");
    }

    [Fact]
    public void Registering_a_down_siblings_vcpu_info_writes_its_time_area_through_the_callers_memory()
    {
        // VCPUOP_register_vcpu_info of a down sibling writes the pvclock into the new vcpu_info at once, and with it the
        // sibling's registered time area: through the caller's memory, as in the test above.
        const ulong Area = 0x100, GuestRam = 0x100;
        using var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
        var d = SiblingDomain(machine, GuestRam);
        var caller = new GuestBuffer(4096);
        MemoryMarshal.Write(caller.Bytes, Area);
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.VcpuOp, Rdi = (ulong)VcpuOp.RegisterVcpuTimeMemoryArea, Rsi = 1, Rdx = 0 };
        machine.Hypercalls.Dispatch(d.Vcpus[0], ref regs, GuestX86Mode.Long64, 0, caller);
        Assert.Equal(0, (long)regs.Rax);
        Assert.False(d.Vcpus[1].IsUp);

        caller.Bytes.AsSpan((int)Area, 32).Fill(0xFF);
        MemoryMarshal.Write(caller.Bytes, new VcpuRegisterVcpuInfo { Mfn = 2, Offset = 0 });
        regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.VcpuOp, Rdi = (ulong)VcpuOp.RegisterVcpuInfo, Rsi = 1, Rdx = 0 };
        machine.Hypercalls.Dispatch(d.Vcpus[0], ref regs, GuestX86Mode.Long64, 0, caller);

        Assert.Equal(0, (long)regs.Rax);
        Assert.NotEqual(uint.MaxValue, MemoryMarshal.Read<uint>(caller.Bytes.AsSpan((int)Area)));   // the version, even again
        Span<byte> ram = stackalloc byte[48];
        Assert.True(d.Physical.TryRead(new GuestPhysicalAddress(GuestRam), ram, out _));
        Assert.True(ram.IndexOfAnyExcept((byte)0xEE) < 0, "the area was written through vCPU 1's own accessor");
    }

    /// <summary>
    /// A domain of two vCPUs (vCPU 1 down and not initialised, paging off) with gfns 0-3 populated and 48 bytes of 0xEE
    /// at guest-physical <paramref name="guestRam"/>: what an access through vCPU 1's own accessor at that address would change.
    /// </summary>
    private static Domain SiblingDomain(Machine machine, ulong guestRam)
    {
        var d = new Domain(machine, 1, "d1", 2, privileged: false, upcall: null);
        machine.AddDomain(d);
        d.SetMaxPages(16);
        for (ulong gfn = 0; gfn < 4; gfn++)
            Assert.Equal(0, d.Populate(gfn));
        Assert.Equal(0, d.InitialiseBootVcpu(0x1000, 0));
        Span<byte> ram = stackalloc byte[48];
        ram.Fill(0xEE);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(guestRam), ram, out _));
        return d;
    }
}
