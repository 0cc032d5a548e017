using System.Runtime.InteropServices;
using Iced.Intel;
using VmmKit.Ept;
using VmmKit.ReferenceHypervisor.Demo;
using VmmKit.ReferenceHypervisor.Devices;
using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// An audit of the devices as this hypervisor wires them (src/Devices: the local APIC on the exit loop and the
/// scheduler, COM1 and port 0xE9 on the domain console) against a hostile guest, on tiny Iced-assembled guests; each test
/// does what a guest can do and checks the host's answer against Xen's, citing the rule's source.
/// </summary>
public class HostileDeviceAuditTests
{
    private const uint Load = 0x100000;
    private const uint Apic = 0xFEE0_0000;
    private const uint Gdt = 0xA000, Gdtr = 0xA100, Idtr = 0xA200, Idt = 0xA800;
    private const uint BodyAt = Load + 0x1000, HandlerAt = Load + 0x3000;
    private const byte TimerVector = 0x30;

    /// <summary>
    /// A one-vCPU domain running <paramref name="body"/> with a flat GDT (code 0x08, data 0x10) and an IDT whose
    /// <see cref="TimerVector"/> gate (at <see cref="HandlerAt"/>) counts interrupts in EBP and writes EOI; the body, at
    /// <see cref="BodyAt"/>, ends in CLI; HLT.
    /// </summary>
    private static (Machine Machine, Domain Domain) Build(Action<Assembler> body, ulong budget = 2_000_000)
    {
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault()) { MaxInstructionsPerVcpu = budget };
        return (machine, AddDomain(machine, "audit", body));
    }

    /// <summary>Adds a domain like <see cref="Build"/>'s to <paramref name="machine"/>.</summary>
    private static Domain AddDomain(Machine machine, string name, Action<Assembler> body)
    {
        var entry = new Assembler(32);
        entry.mov(esp, Load + 0x6000);
        entry.lgdt(__[Gdtr]);
        entry.push(0x08);
        entry.push(BodyAt);
        entry.retf();

        var main = new Assembler(32);
        main.mov(ax, 0x10);
        main.mov(ds, ax);
        main.mov(es, ax);
        main.mov(ss, ax);
        main.mov(__word_ptr[Idt + (TimerVector * 8)], unchecked((ushort)HandlerAt));
        main.mov(__word_ptr[Idt + (TimerVector * 8) + 2], 0x08);
        main.mov(__word_ptr[Idt + (TimerVector * 8) + 4], 0x8E00);   // present, DPL 0, 32-bit interrupt gate
        main.mov(__word_ptr[Idt + (TimerVector * 8) + 6], (ushort)(HandlerAt >> 16));
        main.lidt(__[Idtr]);
        main.xor(ebp, ebp);
        body(main);
        main.cli();
        main.hlt();

        var handler = new Assembler(32);
        handler.inc(ebp);
        handler.mov(__dword_ptr[Apic + 0xB0], 0u);                  // EOI
        handler.iretd();

        byte[] image = new byte[0x4000];
        ThreadedSchedulerTests.Assemble(entry, Load).CopyTo(image, 0);
        ThreadedSchedulerTests.Assemble(main, BodyAt).CopyTo(image, (int)(BodyAt - Load));
        ThreadedSchedulerTests.Assemble(handler, HandlerAt).CopyTo(image, (int)(HandlerAt - Load));
        Assert.True(machine.TryCreateDomain(new DomainConfig(name, Elf32ImageWriter.Write(Load, image, 0x8000, Load), 8 << 20),
            out var d, out string e), e);
        Span<ulong> gdt = [0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];
        Assert.True(d!.Physical.TryWrite(new GuestPhysicalAddress(Gdt), MemoryMarshal.AsBytes(gdt), out _));
        Span<byte> pointer = stackalloc byte[6];
        BitConverter.TryWriteBytes(pointer, (ushort)23);
        BitConverter.TryWriteBytes(pointer[2..], Gdt);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Gdtr), pointer, out _));
        BitConverter.TryWriteBytes(pointer, (ushort)(256 * 8 - 1));
        BitConverter.TryWriteBytes(pointer[2..], Idt);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Idtr), pointer, out _));
        return d;
    }

    /// <summary>The guest's xAPIC set-up: software enable, divide by 1, the LVT timer entry, then the initial count.</summary>
    private static void StartTimer(Assembler a, uint lvtTimer, uint initialCount)
    {
        a.mov(__dword_ptr[Apic + 0xF0], 0x1FFu);                   // SVR: software-enabled
        a.mov(__dword_ptr[Apic + 0x3E0], 0xBu);                    // divide by 1
        a.mov(__dword_ptr[Apic + 0x320], lvtTimer);
        a.mov(__dword_ptr[Apic + 0x380], initialCount);
    }

    [Fact]
    public void A_periodic_apic_timer_of_one_tick_interrupts_at_most_every_100_microseconds()
    {
        // Initial count 1, divide by 1, periodic: an expiry every TSC tick, so every instruction would end in a
        // VMX-preemption-timer exit and an injected interrupt (a host timer storm the guest asks for with four stores).
        // Xen makes a periodic timer's period at least 100 us (xen/arch/x86/hvm/vpt.c create_periodic_time).
        const uint Loops = 200_000;
        var (machine, d) = Build(a =>
        {
            StartTimer(a, 0x20000u | TimerVector, 1);
            a.sti();
            a.mov(ecx, Loops);
            var again = a.CreateLabel();
            a.Label(ref again);
            a.dec(ecx);
            a.jnz(again);
        });
        using var owner = machine;
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        var v = d.Vcpus[0];
        ulong periods = (v.InstructionsRetired / 100_000) + 1;      // 1 GHz TSC: 100 us is 100,000 ticks
        Assert.InRange(v.Registers.Rbp, 1ul, periods);
        Assert.InRange(v.ExitsFor(VmxExitReason.VmxPreemptionTimerExpired), 0ul, periods + 1);
    }

    [Theory]
    [InlineData(0x30000u | TimerVector, 0x00u)]             // periodic, masked
    [InlineData(0x20000u | TimerVector, 0xF0u)]             // periodic, unmasked, its vector held back by the TPR
    public void A_vcpu_halted_with_a_timer_that_can_never_wake_it_asks_for_no_wake_up(uint lvtTimer, uint tpr)
    {
        // When every vCPU is blocked, the scheduler skips guest time to the earliest deadline of a blocked vCPU
        // (Machine.SkipToNextDeadline). A masked timer, or one whose vector already waits in the IRR behind the TPR, never
        // wakes its vCPU; counted as a deadline, one of 1 tick kept the host skipping 2 ns at a time for ever, and the
        // other blocked domains' clocks stood still. It is no deadline: the domain, which nothing can wake, is crashed
        // at the end of the run (HaltTests), as when no timer is set.
        var (machine, d) = Build(a => { });
        using var owner = machine;
        var apic = d.Vcpus[0].Apic;
        void Write(int offset, uint value) => apic.Write(apic.BaseAddress, (ulong)offset, BitConverter.GetBytes(value));
        Write(0xF0, 0x1FF);
        Write(0x80, tpr);
        Write(0x3E0, 0xB);
        Write(0x320, lvtTimer);
        Write(0x380, 1);
        Assert.NotNull(apic.NextTimerExpiry);
        GuestTime.TryAdvance(d.Vcpus[0], 10);
        Assert.False(VcpuApic.HasPendingInterrupt(d.Vcpus[0]));    // expired: masked, or in the IRR behind the TPR
        Assert.Null(VcpuApic.NextDeadline(d.Vcpus[0]));
    }

    [Fact]
    public void A_guest_halted_with_only_a_masked_periodic_timer_is_crashed_as_one_nothing_can_wake()
    {
        var (machine, d) = Build(a =>
        {
            StartTimer(a, 0x30000u | TimerVector, 1);
            a.sti();
            a.hlt();
        });
        using var owner = machine;
        machine.Run();
        Assert.Equal(DomainState.Crashed, d.State);
        Assert.Contains("nothing can wake it", d.CrashReport);
    }

    [Fact]
    public void A_toolstack_built_guest_printing_to_port_e9_at_full_speed_cannot_flood_the_host_log_or_send_it_escapes()
    {
        // A domain the toolstack built prints to the host's log ("(XEN) (dN) ..."). Xen's hvm_print_line
        // (xen/arch/x86/hvm/hvm.c) keeps only printable characters, newline and tab (is_console_printable), and its
        // guest_printk is a rate-limited guest message (xen/drivers/char/console.c): a guest writing newlines in a loop,
        // or terminal escape sequences, reaches neither the log without bound nor the operator's terminal.
        var log = new List<string>();
        using var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault()) { Logger = log.Add };
        var d = new Domain(machine, 7, "d7", 1, privileged: false, upcall: null);
        machine.AddDomain(d);
        foreach (byte b in System.Text.Encoding.Latin1.GetBytes("\u001b]0;owned\u0007\u001b[2Jhi\u009b31m\n"))
            Assert.True(d.Io.WritePort(0xE9, 1, b));
        for (int i = 0; i < 200_000; i++)
            d.Io.WritePort(0xE9, 1, '\n');
        d.Console.Flush();
        Assert.Contains("(d7) ]0;owned[2Jhi31m", log);
        Assert.DoesNotContain(log, l => l.Any(c => c < 0x20 || c is >= (char)0x7F and < (char)0xA0));
        Assert.InRange(log.Count, 2, 5_000);                                             // of 200,001 lines
        Assert.Contains(log, l => l.Contains("not logged", StringComparison.Ordinal));
        Assert.Contains("\u001b[2J", d.Console.Transcript, StringComparison.Ordinal);   // the transcript keeps the guest's bytes
    }

    [Fact]
    public void A_guest_waking_every_100_microseconds_does_not_stop_the_clock_of_another_idle_domain()
    {
        // Every vCPU of the machine blocked: guest time skips to the earliest deadline (Machine.SkipToNextDeadline).
        // Idle time passes for every idle domain, as it does when another domain runs (Machine.AdvanceOtherClocks): a
        // domain whose APIC timer wakes it every 100 us must not hold back a domain sleeping for 1 ms until it is done.
        var log = new List<string>();
        using var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault()) { MaxInstructionsPerVcpu = 2_000_000, Logger = log.Add };
        var ticker = AddDomain(machine, "ticker", a =>
        {
            StartTimer(a, 0x20000u | TimerVector, 100_000);         // periodic, every 100 us
            a.sti();
            var again = a.CreateLabel();
            a.Label(ref again);
            a.hlt();
            a.cmp(ebp, 1000);                                       // 1,000 ticks: 100 ms
            a.jb(again);
        });
        var sleeper = AddDomain(machine, "sleeper", a =>
        {
            StartTimer(a, TimerVector, 1_000_000);                  // one-shot, 1 ms
            a.sti();
            a.hlt();
        });
        machine.Run();
        Assert.True(ticker.State == DomainState.Shutdown, ticker.CrashReport);
        Assert.True(sleeper.State == DomainState.Shutdown, sleeper.CrashReport);
        Assert.Equal(1ul, sleeper.Vcpus[0].Registers.Rbp);
        int slept = log.FindIndex(l => l.StartsWith($"d{sleeper.Id} ", StringComparison.Ordinal) && l.Contains("shut down", StringComparison.Ordinal));
        int ticked = log.FindIndex(l => l.StartsWith($"d{ticker.Id} ", StringComparison.Ordinal) && l.Contains("shut down", StringComparison.Ordinal));
        Assert.True(slept >= 0 && ticked >= 0, string.Join('\n', log));
        Assert.True(slept < ticked, "the sleeper's 1 ms passed only once the ticker's 100 ms were over");
    }
}
