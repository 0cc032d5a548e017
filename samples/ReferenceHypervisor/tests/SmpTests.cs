using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Iced.Intel;
using VmmKit.TestSupport;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Domains with several vCPUs (Core/VcpuLifecycle.cs): secondary vCPUs start down and wait for INIT/SIPI, which the boot
/// vCPU sends through its local APIC's ICR to a real-mode trampoline (tiny Iced-assembled guests), or for
/// VCPUOP_initialise and VCPUOP_up (called as a guest would, through the hypercall table), with Xen's errnos; a hostile
/// guest's SIPI storms, INITs to itself and bad vcpuids stop nothing but itself.
/// </summary>
public class SmpTests
{
    private const uint Load = 0x100000;
    private const uint ApicPage = 0xFEE0_0000;
    private const uint IcrLow = ApicPage + 0x300, IcrHigh = ApicPage + 0x310;

    /// <summary>Where the trampoline is copied: physical 0x8000, start-up vector 8.</summary>
    private const uint Trampoline = 0x8000;

    /// <summary>The AP's counter (incremented once per start) and the CS it saw.</summary>
    private const uint Counter = 0x9000, SeenCs = 0x9004, ApTsc = 0x9008, BspTscBefore = 0x9010, BspTscAfter = 0x9018;

    /// <summary>ICR low: INIT, level-triggered assert (what Linux's wakeup_secondary_cpu_via_init sends).</summary>
    private const uint IcrInit = 0xC500;

    /// <summary>ICR low: start-up with vector 8.</summary>
    private const uint IcrStartup = 0x0600 | (Trampoline >> 12);

    /// <summary>The real-mode code a start-up IPI runs: records CS and a TSC read, counts the start, halts with interrupts off.</summary>
    private static byte[] ApCode()
    {
        var a = new Assembler(16);
        a.xor(ax, ax);
        a.mov(ds, ax);
        a.mov(ax, cs);
        a.mov(__word_ptr[SeenCs], ax);
        a.rdtsc();
        a.mov(__dword_ptr[ApTsc], eax);
        // Last: a boot vCPU that sees the count (on the threaded scheduler, at once) finds the AP's TSC read done.
        a.inc(__dword_ptr[Counter]);
        a.cli();
        a.hlt();
        var s = new MemoryStream();
        a.Assemble(new StreamCodeWriter(s), Trampoline);
        return s.ToArray();
    }

    /// <summary>
    /// Builds a domain with <paramref name="vcpus"/> vCPUs whose boot vCPU runs <paramref name="body"/>, then halts with
    /// interrupts off; <see cref="ApCode"/> is placed in the trampoline page (as Linux copies its real-mode trampoline).
    /// </summary>
    /// <summary>The scheduler the guests run on (<see cref="ThreadedSmpTests"/> runs every test here on the threaded one).</summary>
    private protected virtual SchedulerMode Scheduling => SchedulerMode.RoundRobin;

    private (Machine Machine, Domain Domain) Build(int vcpus, Action<Assembler> body, ulong budget = 20_000_000)
    {
        var a = new Assembler(32);
        a.mov(esp, Load + 0x4000);
        body(a);
        a.cli();
        a.hlt();
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load);
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault()) { MaxInstructionsPerVcpu = budget, Scheduling = Scheduling };
        Assert.True(machine.TryCreateDomain(new DomainConfig("smp", Elf32ImageWriter.Write(Load, stream.ToArray(), 0x4000, Load), 8 << 20,
            Vcpus: vcpus), out var d, out string e), e);
        Assert.True(d!.Physical.TryWrite(new GuestPhysicalAddress(Trampoline), ApCode(), out _));
        return (machine, d);
    }

    private static void SendIpi(Assembler a, uint destination, uint low)
    {
        a.mov(__dword_ptr[IcrHigh], destination << 24);
        a.mov(__dword_ptr[IcrLow], low);
    }

    /// <summary>Spins (with PAUSE, as Linux's cpu_relax) until the AP's counter reaches <paramref name="value"/>.</summary>
    private static void WaitForCounter(Assembler a, uint value)
    {
        var again = a.CreateLabel();
        a.Label(ref again);
        a.pause();
        a.cmp(__dword_ptr[Counter], value);
        a.jb(again);
    }

    private static uint ReadGuest(Domain d, uint address)
    {
        Assert.True(d.Physical.TryRead(new GuestPhysicalAddress(address), out uint value));
        return value;
    }

    [Fact]
    public void Secondary_vcpus_start_down_waiting_for_init_and_sipi()
    {
        var (machine, d) = Build(4, _ => { });
        using var owned = machine;
        Assert.Equal(4, d.Vcpus.Count);
        Assert.True(d.Vcpus[0].IsUp && d.Vcpus[0].IsInitialised);
        Assert.All(d.Vcpus.Skip(1), v => Assert.False(v.IsUp || v.IsInitialised));
        Assert.Equal([0u, 1u, 2u, 3u], d.Vcpus.Select(v => v.Apic.ApicId));
        Assert.Equal(4, d.Events.VcpuCount);
        // The boot vCPU halts with interrupts off: the APs never started, so no vCPU is up and the domain powers off.
        machine.Run();
        Assert.Equal(DomainState.Shutdown, d.State);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);
        Assert.All(d.Vcpus.Skip(1), v => Assert.Equal(0ul, v.InstructionsRetired));
    }

    [Fact]
    public void Init_then_sipi_starts_the_ap_in_real_mode_at_the_vector_page()
    {
        var (machine, d) = Build(2, a =>
        {
            a.rdtsc();
            a.mov(__dword_ptr[BspTscBefore], eax);
            SendIpi(a, 1, IcrInit);
            SendIpi(a, 1, IcrStartup);
            SendIpi(a, 1, IcrStartup);      // Linux sends two; the second finds the AP running and is ignored
            WaitForCounter(a, 1);
            a.rdtsc();
            a.mov(__dword_ptr[BspTscAfter], eax);
        });
        using var owned = machine;
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(1u, ReadGuest(d, Counter));
        Assert.Equal(Trampoline >> 4, ReadGuest(d, SeenCs) & 0xFFFF);   // CS = vector << 8, base vector << 12
        var ap = d.Vcpus[1];
        Assert.True(ap.IsInitialised);
        Assert.False(ap.IsUp);                                        // it halted with interrupts off
        Assert.True(ap.InstructionsRetired is > 0 and < 20, $"{ap.InstructionsRetired}");
        // One clock for both: the AP's first TSC read lies between the BSP's reads before the INIT and after the AP ran.
        // The domain's clock never goes back (src/Core/GuestTime.cs), and a read raises the reader's TSC to it, so two
        // vCPUs' reads in turn may return the same value (as Linux's check_tsc_warp allows: only prev > now is a warp);
        // with threads that happens now and then, so the bounds are inclusive.
        uint before = ReadGuest(d, BspTscBefore), apTsc = ReadGuest(d, ApTsc), after = ReadGuest(d, BspTscAfter);
        Assert.True(before <= apTsc && apTsc <= after && before < after, $"BSP {before}, AP {apTsc}, BSP {after}");
    }

    [Fact]
    public void A_sipi_storm_starts_the_ap_once_and_init_again_restarts_it()
    {
        var (machine, d) = Build(2, a =>
        {
            SendIpi(a, 1, IcrInit);
            SendIpi(a, 1, IcrStartup);
            WaitForCounter(a, 1);
            // 500 more start-up IPIs with assorted vectors, to the halted AP and to the BSP itself: all ignored.
            a.mov(ebx, 500);
            var storm = a.CreateLabel();
            a.Label(ref storm);
            a.mov(__dword_ptr[IcrHigh], 1u << 24);
            a.mov(eax, ebx);
            a.and(eax, 0xFF);
            a.or(eax, 0x0600);
            a.mov(__dword_ptr[IcrLow], eax);
            a.mov(__dword_ptr[IcrHigh], 0u);
            a.mov(__dword_ptr[IcrLow], eax);
            a.dec(ebx);
            a.jnz(storm);
            // INIT resets the AP to wait-for-SIPI; the next SIPI starts it again.
            SendIpi(a, 1, IcrInit);
            SendIpi(a, 1, IcrStartup);
            WaitForCounter(a, 2);
        });
        using var owned = machine;
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(2u, ReadGuest(d, Counter));
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);
    }

    [Fact]
    public void An_init_and_sipi_storm_at_a_starting_ap_stops_nothing_but_the_guest_itself()
    {
        // 300 INIT + SIPI pairs without waiting: each INIT resets the AP whether or not it ran since the last SIPI.
        var (machine, d) = Build(2, a =>
        {
            a.mov(ebx, 300);
            var storm = a.CreateLabel();
            a.Label(ref storm);
            SendIpi(a, 1, IcrInit);
            SendIpi(a, 1, IcrStartup);
            a.dec(ebx);
            a.jnz(storm);
            WaitForCounter(a, 1);
        });
        using var owned = machine;
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, $"{d.State}: {d.CrashReport}");
        Assert.InRange(ReadGuest(d, Counter), 1u, 300u);
        Assert.True(d.Vcpus[1].IsInitialised && !d.Vcpus[1].IsUp);
    }

    [Fact]
    public void Init_to_all_including_self_takes_every_vcpu_down_and_powers_off()
    {
        // Shorthand "all including self" (ICR bits 19:18 = 10b): the BSP resets itself, as Xen's vlapic does; with no
        // vCPU left up the domain powers off, the host carries on. The instruction after the ICR write never runs.
        var (machine, d) = Build(2, a =>
        {
            a.mov(__dword_ptr[IcrLow], IcrInit | (2u << 18));
            a.mov(__dword_ptr[Counter], 0x77u);
        });
        using var owned = machine;
        machine.Run();
        Assert.Equal(DomainState.Shutdown, d.State);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);
        Assert.Equal(0u, ReadGuest(d, Counter));
        Assert.False(d.Vcpus[0].IsUp || d.Vcpus[0].IsInitialised);
    }

    private static long VcpuOp(Machine machine, VirtualCpu caller, GuestPage memory, VcpuOp op, ulong vcpuid, ulong arg = 0)
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.VcpuOp, Rdi = (ulong)op, Rsi = vcpuid, Rdx = arg };
        machine.Hypercalls.Dispatch(caller, ref regs, GuestX86Mode.Long64, 0, memory);
        return (long)regs.Rax;
    }

    private static long Initialise(Machine machine, VirtualCpu caller, GuestPage memory, ulong vcpuid, in VcpuHvmContext context)
    {
        MemoryMarshal.Write(memory.Bytes, in context);
        return VcpuOp(machine, caller, memory, Hypercall.VcpuOp.Initialise, vcpuid);
    }

    /// <summary>A flat 32-bit protected-mode context (paging off) starting at <paramref name="eip"/>, its stack at <paramref name="esp"/>.</summary>
    internal static VcpuHvmContext Flat32(uint eip, uint esp = Load + 0x3000) => new()
    {
        Mode = VcpuHvmContext.Mode32,
        X86_32 = new VcpuHvmX86_32
        {
            Eip = eip, Esp = esp, Eflags = 2, Cr0 = 0x11,
            CsLimit = 0xFFFFF, DsLimit = 0xFFFFF, SsLimit = 0xFFFFF, EsLimit = 0xFFFFF, TrLimit = 0x67,
            CsAr = 0xC9B, DsAr = 0xC93, SsAr = 0xC93, EsAr = 0xC93, TrAr = 0x8B,
        },
    };

    [Fact]
    public void Vcpuop_initialise_up_down_and_is_up_follow_xen()
    {
        // vCPU 1 is initialised in flat 32-bit mode at code that stores a marker and halts with interrupts off.
        var (machine, d) = Build(3, a => { });
        using var owned = machine;
        var bsp = d.Vcpus[0];
        var m = new GuestPage();
        const long ENOENT = -2, EINVAL = -22, EEXIST = -17, EFAULT = -14;

        Assert.Equal(1, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.IsUp, 0));
        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.IsUp, 1));
        foreach (ulong bad in (ulong[])[3, 128, 0xFFFF_FFFF, 0x1_0000_0000 | 3])
        {
            Assert.Equal(ENOENT, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.IsUp, bad));
            Assert.Equal(ENOENT, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Up, bad));
            Assert.Equal(ENOENT, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Down, bad));
            Assert.Equal(ENOENT, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Initialise, bad));
        }

        Assert.Equal(EINVAL, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Up, 1));          // not initialised
        Assert.Equal(EFAULT, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Initialise, 1, 0x10_0000));
        Assert.Equal(EEXIST, Initialise(machine, bsp, m, 0, Flat32(Load)));              // the running BSP

        // Contexts Xen's arch_set_info_hvm_guest refuses; none changes the vCPU.
        var badMode = Flat32(Load);
        badMode.Mode = 2;
        var nullCs = Flat32(Load);
        nullCs.X86_32.CsAr = 0;
        var readOnlySs = Flat32(Load);
        readOnlySs.X86_32.SsAr = 0xC91;
        var dplMismatch = Flat32(Load);
        dplMismatch.X86_32.SsAr = 0xCF3;
        var outsideCs = Flat32(Load);
        outsideCs.X86_32.CsAr = 0x09B;                   // byte-granular: limit 0xFFFFF < EIP
        outsideCs.X86_32.Eip = 0x20_0000;
        var attrPad = Flat32(Load);
        attrPad.X86_32.DsAr = 0x1C93;
        var trNotTss = Flat32(Load);
        trNotTss.X86_32.TrAr = 0x89;
        var pgWithoutPe = Flat32(Load);
        pgWithoutPe.X86_32.Cr0 = 0x8000_0010;
        var vmxe = Flat32(Load);
        vmxe.X86_32.Cr4 = 1u << 13;
        var mce = Flat32(Load);
        mce.X86_32.Cr4 = 1u << 6;                         // outside hvm_cr4_guest_valid_bits: CPUID offers no MCE/MCA
        var umip = Flat32(Load);
        umip.X86_32.Cr4 = 1u << 11;                       // nor UMIP
        var lmaWithoutLme = Flat32(Load);
        lmaWithoutLme.X86_32.Efer = 1ul << 10;
        var noLme64 = new VcpuHvmContext { Mode = VcpuHvmContext.Mode64, X86_64 = new VcpuHvmX86_64 { Cr0 = 0x8000_0011, Cr4 = 0x20, Rip = Load } };
        var nonCanonical = new VcpuHvmContext { Mode = VcpuHvmContext.Mode64, X86_64 = new VcpuHvmX86_64 { Cr0 = 0x8000_0011, Cr4 = 0x20, Efer = 0x500, Rip = 0x8000_0000_0000 } };
        foreach (var bad in (VcpuHvmContext[])[badMode, nullCs, readOnlySs, dplMismatch, outsideCs, attrPad, trNotTss, pgWithoutPe, vmxe, mce, umip, lmaWithoutLme, noLme64, nonCanonical])
            Assert.Equal(EINVAL, Initialise(machine, bsp, m, 1, bad));
        Assert.False(d.Vcpus[1].IsInitialised);

        // A good one: initialised, still down until VCPUOP_up; a second initialise is -EEXIST.
        Assert.Equal(0, Initialise(machine, bsp, m, 1, Flat32(Load + 0x3800)));
        Assert.True(d.Vcpus[1].IsInitialised);
        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.IsUp, 1));
        Assert.Equal(EEXIST, Initialise(machine, bsp, m, 1, Flat32(Load)));
        Assert.Equal(Load + 0x3800, d.Vcpus[1].Vmcs.Read(VmcsField.GuestRip));
        Assert.Equal(0xC09Bu, (uint)d.Vcpus[1].Vmcs.Read(VmcsField.GuestCsAccessRights));
        Assert.Equal(0x11ul, d.Vcpus[1].Vmcs.Read(VmcsField.Cr0ReadShadow));

        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Up, 1));
        Assert.Equal(1, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.IsUp, 1));
        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Up, 1));               // already up: still 0
        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Down, 1));
        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.IsUp, 1));
        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Down, 2));             // a down vCPU: nothing to do
        Assert.Equal(DomainState.Running, d.State);

        // The last vCPU going down powers the domain off (Xen's do_vcpu_op).
        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.Down, 0));
        Assert.Equal(DomainState.Shutdown, d.State);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);
    }

    [Fact]
    public void A_vcpu_started_by_vcpuop_runs_its_context()
    {
        // The AP's code at Load + 0x3800: store a marker, halt with interrupts off. The BSP halts at once; the AP keeps
        // the domain up until it halts too.
        var (machine, d) = Build(2, a => { });
        using var owned = machine;
        var code = new Assembler(32);
        code.mov(__dword_ptr[Counter], 0x1234u);
        code.mov(__dword_ptr[SeenCs], esi);
        code.cli();
        code.hlt();
        var s = new MemoryStream();
        code.Assemble(new StreamCodeWriter(s), Load + 0x3800);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Load + 0x3800), s.ToArray(), out _));
        var m = new GuestPage();
        var context = Flat32(Load + 0x3800);
        context.X86_32.Esi = 0xABCD;
        Assert.Equal(0, Initialise(machine, d.Vcpus[0], m, 1, context));
        Assert.Equal(0, VcpuOp(machine, d.Vcpus[0], m, Hypercall.VcpuOp.Up, 1));
        machine.Run();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(0x1234u, ReadGuest(d, Counter));
        Assert.Equal(0xABCDu, ReadGuest(d, SeenCs));
    }

    [Fact]
    public void Register_vcpu_info_for_another_vcpu_needs_it_down()
    {
        var (machine, d) = Build(2, a => { });
        using var owned = machine;
        var bsp = d.Vcpus[0];
        var m = new GuestPage();
        // struct vcpu_register_vcpu_info { uint64 mfn; uint32 offset; uint32 rsvd; }: gfn 0x20, offset 0.
        MemoryMarshal.Write(m.Bytes, new VcpuRegisterVcpuInfo { Mfn = 0x20, Offset = 0 });
        Assert.Equal(0, VcpuOp(machine, bsp, m, Hypercall.VcpuOp.RegisterVcpuInfo, 1));    // vCPU 1 is down: allowed
        Assert.True(d.Vcpus[1].Time.IsRegistered);
        Assert.Equal(0, Initialise(machine, bsp, m, 1, Flat32(Load)));
        MemoryMarshal.Write(m.Bytes, new VcpuRegisterVcpuInfo { Mfn = 0x21, Offset = 0 });
        Assert.Equal(-22, VcpuOp(machine, d.Vcpus[1], m, Hypercall.VcpuOp.RegisterVcpuInfo, 0));   // vCPU 0 is up: -EINVAL
    }

    [Fact]
    public void Cpuid_reports_each_vcpus_own_apic_id()
    {
        var leaf1 = CpuidExit.PerVcpu(new Cpu.CpuidResult(0x600, 0x0001_0800, 0, 0), 1, 5);
        Assert.Equal(0x0501_0800u, leaf1.Ebx);
        var leafB = CpuidExit.PerVcpu(new Cpu.CpuidResult(1, 1, 0x100, 0), 0xB, 7);
        Assert.Equal(7u, leafB.Edx);
        Assert.Equal(default, CpuidExit.PerVcpu(default, 0xB, 7));     // leaf 0BH not offered: stays zero
    }

    [Fact]
    public void A_domain_has_at_most_128_vcpus()
    {
        using var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault());
        byte[] kernel = Elf32ImageWriter.Write(Load, [0xFA, 0xF4], 0x1000, Load);
        Assert.False(machine.TryCreateDomain(new DomainConfig("many", kernel, 8 << 20, Vcpus: 129), out _, out string error));
        Assert.Contains("1 to 128 vCPUs", error);
        Assert.False(machine.TryCreateDomain(new DomainConfig("none", kernel, 8 << 20, Vcpus: 0), out _, out _));
    }

    [Fact]
    public void Vmmkit_hv_boot_takes_1_to_128_vcpus()
    {
        byte[] kernel = Elf32ImageWriter.Write(Load, [0xFA, 0xF4], 0x1000, Load);   // cli; hlt
        Assert.Equal(Cli.ExitCodes.StartFailure, Cli.Runner.Boot("k", kernel, [], 8, "", 1_000_000, trace: false, vcpus: 0));
        Assert.Equal(Cli.ExitCodes.StartFailure, Cli.Runner.Boot("k", kernel, [], 8, "", 1_000_000, trace: false, vcpus: 129));
        // Four vCPUs, three never started: the boot vCPU's HLT with interrupts off leaves none up, a poweroff (status 0).
        Assert.Equal(Cli.ExitCodes.Poweroff, Cli.Runner.Boot("k", kernel, [], 8, "", 1_000_000, trace: false, vcpus: 4));
    }

    [Fact]
    public void Vcpu_hvm_context_matches_xen_hvm_vcpu_h()
    {
        var c = default(VcpuHvmContext);
        var v = XenAbiLayout.Evaluate(["xen/xen.h", "xen/hvm/hvm_vcpu.h"],
        [
            "sizeof(struct vcpu_hvm_context)", "offsetof(struct vcpu_hvm_context, cpu_regs)", "VCPU_HVM_MODE_32B", "VCPU_HVM_MODE_64B",
            "sizeof(struct vcpu_hvm_x86_32)", "offsetof(struct vcpu_hvm_x86_32, eip)", "offsetof(struct vcpu_hvm_x86_32, cr0)",
            "offsetof(struct vcpu_hvm_x86_32, efer)", "offsetof(struct vcpu_hvm_x86_32, cs_base)", "offsetof(struct vcpu_hvm_x86_32, tr_base)",
            "offsetof(struct vcpu_hvm_x86_32, cs_limit)", "offsetof(struct vcpu_hvm_x86_32, cs_ar)", "offsetof(struct vcpu_hvm_x86_32, tr_ar)",
            "sizeof(struct vcpu_hvm_x86_64)", "offsetof(struct vcpu_hvm_x86_64, rip)", "offsetof(struct vcpu_hvm_x86_64, cr0)",
            "offsetof(struct vcpu_hvm_x86_64, efer)",
        ]);
        Assert.Equal(new long[]
        {
            Unsafe.SizeOf<VcpuHvmContext>(), Off(ref c, ref c.X86_32), VcpuHvmContext.Mode32, VcpuHvmContext.Mode64,
            Unsafe.SizeOf<VcpuHvmX86_32>(), Off(ref c.X86_32, ref c.X86_32.Eip), Off(ref c.X86_32, ref c.X86_32.Cr0),
            Off(ref c.X86_32, ref c.X86_32.Efer), Off(ref c.X86_32, ref c.X86_32.CsBase), Off(ref c.X86_32, ref c.X86_32.TrBase),
            Off(ref c.X86_32, ref c.X86_32.CsLimit), Off(ref c.X86_32, ref c.X86_32.CsAr), Off(ref c.X86_32, ref c.X86_32.TrAr),
            Unsafe.SizeOf<VcpuHvmX86_64>(), Off(ref c.X86_64, ref c.X86_64.Rip), Off(ref c.X86_64, ref c.X86_64.Cr0),
            Off(ref c.X86_64, ref c.X86_64.Efer),
        }, v);
    }

    private static long Off<TS, TF>(ref TS s, ref TF f) => Unsafe.ByteOffset(ref Unsafe.As<TS, byte>(ref s), ref Unsafe.As<TF, byte>(ref f)).ToInt64();
}
