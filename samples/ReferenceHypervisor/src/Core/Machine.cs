using VmmKit.Ept;
using VmmKit.EventChannel;
using VmmKit.GrantTable;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The emulated computer: machine memory, the processors, the hypercall table and the domains.
/// <see cref="Run"/> is the scheduler (<see cref="Scheduling"/>): round-robin over runnable vCPUs on one thread, or each
/// vCPU on a host thread of its own, until every domain has stopped. Crashing one domain never stops the machine.
/// </summary>
internal sealed partial class Machine : IDisposable
{
    /// <summary>Preemption-timer value for one time slice (the timer counts down at the TSC rate >> IA32_VMX_MISC[4:0]).</summary>
    public const uint SliceTimerValue = 1 << 20;

    /// <summary>
    /// The slice while another vCPU of the same domain is runnable too: shorter, so that vCPUs taking turns on one
    /// processor still see each other make progress at a fine grain (a spinning waiter, Linux's delay-loop calibration
    /// against another CPU's jiffies).
    /// </summary>
    public const uint SharedSliceTimerValue = 1 << 17;

    /// <summary>The domid of the in-process services (xenstored, console and block backends): Dom0's id, as the toolstack allocates ports for it.</summary>
    public const ushort BackendDomainId = 0;

    private readonly List<Domain> _domains = [];
    private readonly IProcessorProvider _processors;
    private readonly bool _hasPreemptionTimer;
    private readonly MachineFrameNumber _msrBitmap;
    private ushort _nextDomainId = 1;

    /// <summary>Creates a machine with <paramref name="memoryBytes"/> of RAM whose vCPUs run on <paramref name="processors"/>.</summary>
    public Machine(ulong memoryBytes, IProcessorProvider processors)
        : this(memoryBytes, processors, MachineMemoryBacking.Anonymous, inProcessBackend: true)
    {
    }

    /// <summary>
    /// Creates a machine whose RAM has <paramref name="backing"/>; <paramref name="inProcessBackend"/> false leaves domid 0
    /// to a real control domain (<c>vmmkit-hv host</c>, src/Host) instead of the quick path's in-process console backend.
    /// </summary>
    public Machine(ulong memoryBytes, IProcessorProvider processors, MachineMemoryBacking backing, bool inProcessBackend)
    {
        _processors = processors;
        Memory = new MachineMemory(memoryBytes, backing);
        Frames = new FrameReferences(Memory);
        Grants = new GrantTableHost(Frames);
        // gnttab_flush_tlb: a domain's vCPUs drop their translations before a page its EPT lost is released.
        Grants.FlushTranslations = grants =>
        {
            if (FindDomain(grants.Id) is { } domain && ReferenceEquals(domain.Grants, grants))
                VmmKit.ReferenceHypervisor.Hypercalls.MemoryOpHypercall.FlushEpt(domain);
        };
        Events = new EventChannelHypervisor();
        Upcall = new EventUpcall(this);
        Hypercalls = HypercallTable.Create(this);
        _hasPreemptionTimer = (processors.Capabilities.PinBased.MayBeOne & (uint)PinBasedControls.ActivateVmxPreemptionTimer) != 0;
        // One MSR bitmap for every vCPU (SDM Vol. 3C §25.6.9): the MSRs that are pure processor state (STAR, LSTAR,
        // KERNEL_GS_BASE, ...) stay inside the processor; every other RDMSR/WRMSR exits to MsrExit.
        _msrBitmap = Memory.AllocateFrame(FrameOwner.Hypervisor);
        MsrBitmap.ProcessorStatePassThrough().CopyTo(Memory.GetFrame(_msrBitmap));
        Pv = inProcessBackend ? new Pv.PvServices(this) : null;
    }

    /// <summary>The machine's RAM.</summary>
    public MachineMemory Memory { get; }

    /// <summary>Reference counts of machine frames that grant mappings hold (VmmKit.GrantTable).</summary>
    public FrameReferences Frames { get; }

    /// <summary>Every domain's grant table (VmmKit.GrantTable).</summary>
    public GrantTableHost Grants { get; }

    /// <summary>Every domain's event channels (VmmKit.EventChannel).</summary>
    public EventChannelHypervisor Events { get; }

    /// <summary>Kicks vCPUs when VmmKit.EventChannel marks an upcall pending.</summary>
    internal EventUpcall Upcall { get; }

    /// <summary>The in-process Dom0 services of the quick path: xenstored, the console and block backends (src/Pv); null in host mode, where domid 0 is the real control domain.</summary>
    public Pv.PvServices? Pv { get; }

    /// <summary>The hypercall table shared by every domain.</summary>
    public HypercallDispatcher<VirtualCpu> Hypercalls { get; }

    /// <summary>VMX capabilities of the processors.</summary>
    public VmxCapabilities Capabilities => _processors.Capabilities;

    /// <summary>The domains, live and stopped.</summary>
    public IReadOnlyList<Domain> Domains => _domains;

    /// <summary>Called for every VM exit when set (the CLI's --trace).</summary>
    public Action<VirtualCpu, VmExit>? Trace { get; set; }

    /// <summary>Hypervisor messages (shutdowns, crash reports); stderr in the CLI.</summary>
    public Action<string>? Logger { get; set; }

    /// <summary>
    /// How <see cref="Run"/> runs the vCPUs: <see cref="SchedulerMode.RoundRobin"/> (deterministic) or
    /// <see cref="SchedulerMode.Threaded"/>. Set it before the first domain is created (the VMCS controls differ); left
    /// unset (and no <see cref="DefaultScheduling"/>), the guest domains choose (<see cref="ChooseScheduling"/>).
    /// </summary>
    public SchedulerMode Scheduling
    {
        get => _scheduling ?? SchedulerMode.RoundRobin;
        set => _scheduling = value;
    }

    private SchedulerMode? _scheduling = DefaultScheduling;

    /// <summary>The names <c>--scheduler</c> accepts, in <see cref="SchedulerMode"/> order.</summary>
    public static readonly string[] SchedulerNames = ["round-robin", "threaded"];

    /// <summary>
    /// The scheduler a new machine starts with: <c>vmmkit-hv --scheduler</c>, else the VMMKIT_SCHEDULER environment
    /// variable (<c>round-robin</c> or <c>threaded</c>), else null: the guest domains choose.
    /// </summary>
    public static SchedulerMode? DefaultScheduling { get; set; } =
        TryParseScheduler(Environment.GetEnvironmentVariable("VMMKIT_SCHEDULER"), out var mode) ? mode : null;

    /// <summary>Parses a <see cref="SchedulerNames"/> name (case-insensitive).</summary>
    public static bool TryParseScheduler(string? name, out SchedulerMode mode)
    {
        int index = Array.FindIndex(SchedulerNames, n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase));
        mode = (SchedulerMode)Math.Max(index, 0);
        return index >= 0;
    }

    /// <summary>Test hook: called on a vCPU's thread between its last look at its state and its wait (threaded scheduler).</summary>
    internal Action<VirtualCpu>? BeforeVcpuWait { get; set; }

    /// <summary>
    /// Test hook: called by XENMEM_add_to_physmap and XENMEM_remove_from_physmap with the domain's physmap lock held,
    /// between their look at a guest frame's slot and their change of it (the domain and the gfn).
    /// </summary>
    internal Action<Domain, ulong>? PhysmapSlotLooked { get; set; }

    /// <summary>
    /// Test hook: called by VCPUOP_initialise on the caller's thread once it found the target vCPU not initialised,
    /// before it waits for the target's slice to end (the caller, the target).
    /// </summary>
    internal Action<VirtualCpu, VirtualCpu>? InitialiseLooked { get; set; }

    /// <summary>
    /// Test hook: called by VCPUOP_register_vcpu_info on the caller's thread once it found the target vCPU's vcpu_info
    /// not yet registered, before it takes the page (the caller, the target).
    /// </summary>
    internal Action<VirtualCpu, VirtualCpu>? VcpuInfoLooked { get; set; }

    /// <summary>
    /// Crash a domain whose vCPU retired more instructions than this, counting each preemption check of a long
    /// hypercall as one (<see cref="VirtualCpu.HypercallOperations"/>); 0 = no limit.
    /// </summary>
    public ulong MaxInstructionsPerVcpu { get; set; }

    /// <summary>Builds a domain from <paramref name="config"/>; on failure returns false with the reason and creates nothing.</summary>
    public bool TryCreateDomain(DomainConfig config, out Domain? domain, out string error)
    {
        var d = new Domain(this, _nextDomainId, config);
        if (!d.TryBuild(config, out error))
        {
            d.Dispose();
            domain = null;
            return false;
        }

        _nextDomainId++;
        _domains.Add(d);
        domain = d;
        return true;
    }

    /// <summary>
    /// Runs every domain until none can run any more (all shut down, crashed, or blocked with nothing to wake them).
    /// A blocked vCPU wakes when an event is pending for it or its poll ends (SCHEDOP_block, SCHEDOP_poll, HLT). When
    /// every vCPU is blocked, guest time skips to the earliest timer deadline (deterministic: nothing sleeps); with no
    /// deadline left, nothing can wake the domains and they are crashed to end the run.
    /// </summary>
    public void Run()
    {
        if (Scheduling == SchedulerMode.Threaded)
        {
            RunThreaded();
            return;
        }

        while (true)
        {
            bool ranAny = false;
            // Read before the vCPUs are looked at: a service's notification that lands during the round (on its own
            // thread) must end the wait below at once, not after its quiet period (the woken vCPU runs next round).
            long answers = Pv?.Activity.Answers ?? 0;
            foreach (var domain in _domains)
            {
                WakeBlocked(domain);
                if (domain.State is not (DomainState.Running or DomainState.Blocked) || domain.PauseCount > 0)
                    continue;
                foreach (var vcpu in domain.Vcpus)
                {
                    // Each vCPU in turn gets its slice; one woken by what another vCPU did meanwhile (an IPI, an event)
                    // runs in this same round.
                    if (vcpu.IsBlocked)
                        TryWake(vcpu);
                    if (!vcpu.IsRunnable || domain.State is not (DomainState.Running or DomainState.Blocked))
                        continue;
                    domain.UpdateBlockedState();
                    ranAny = true;
                    ulong before = vcpu.InstructionsRetired;
                    long started = System.Diagnostics.Stopwatch.GetTimestamp();
                    vcpu.RunSlice();
                    domain.CpuTime += System.Diagnostics.Stopwatch.GetElapsedTime(started);
                    Pv?.Poll();
                    AdvanceOtherClocks(vcpu, vcpu.InstructionsRetired - before);
                    domain.UpdateBlockedState();
                }
            }

            if (Host is { } host && host.Poll())
            {
                if (Scheduling == SchedulerMode.Threaded)
                {
                    RunThreaded();   // the toolstack created a guest with several vCPUs (ChooseScheduling)
                    return;
                }

                continue;
            }

            if (ranAny)
                continue;
            if (HostHoldsWork())
            {
                // Dom0 is serving a guest's request: wait for its answer rather than skip the guest's time past it.
                if (Host!.WaitForWork())
                    continue;
                return;
            }

            if (Pv?.WaitForServices(answers, hasDeadline: true) == true || SkipToNextDeadline() || Pv?.WaitForServices(answers, hasDeadline: false) == true)
                continue;
            if (Host is { } waiting)
            {
                // A host with a control domain idles until Dom0 asks for something (or it is told to stop).
                if (waiting.WaitForWork())
                    continue;
                return;
            }

            Pv?.Poll(force: true);
            foreach (var domain in _domains.Where(d => d.State == DomainState.Blocked))
                domain.Crash(domain.Vcpus[0], "every vCPU is blocked with no event pending and no timer set: nothing can wake it");
            return;
        }
    }

    /// <summary>
    /// The clocks of the vCPUs that did not run while <paramref name="ran"/> ran <paramref name="ticks"/> instructions, as on
    /// one shared processor: every other vCPU of the same domain (so that all of a domain's vCPUs read the same TSC and
    /// system time, as on hardware with an invariant TSC), and every vCPU of a domain that has none runnable (a blocked
    /// domain's timers fire even while other domains keep the machine busy). A runnable domain waiting for its turn does
    /// not see time pass.
    /// </summary>
    private void AdvanceOtherClocks(VirtualCpu ran, ulong ticks)
    {
        if (ticks == 0)
            return;
        foreach (var domain in _domains)
        {
            if (domain.State is not (DomainState.Running or DomainState.Blocked))
                continue;
            if (domain != ran.Domain && domain.HasRunnableVcpu)
                continue;
            foreach (var vcpu in domain.Vcpus)
            {
                if (vcpu != ran)
                    GuestTime.TryAdvance(vcpu, ticks);
            }
        }
    }

    /// <summary>Fires due timers of blocked vCPUs and wakes those with a pending event or an ended poll.</summary>
    private static void WakeBlocked(Domain domain)
    {
        if (domain.State is not (DomainState.Running or DomainState.Blocked))
            return;
        foreach (var vcpu in domain.Vcpus)
        {
            if (vcpu.IsBlocked)
                TryWake(vcpu);
            vcpu.Kicked = false;
        }

        domain.UpdateBlockedState();
    }

    /// <summary>Fires <paramref name="vcpu"/>'s due timers and wakes it when an event is pending or its poll ended.</summary>
    internal static void TryWake(VirtualCpu vcpu)
    {
        if (!vcpu.IsUp)
            return;
        ulong now = GuestTime.SystemTime(vcpu);
        vcpu.Timers.FireDue(vcpu, now);
        if (vcpu.Timers.ShouldWake(vcpu, now) || Devices.VcpuApic.HasPendingInterrupt(vcpu))
        {
            vcpu.Timers.Woken();
            vcpu.IsBlocked = false;
            vcpu.Kicked = false;
        }
    }

    /// <summary>
    /// Every vCPU is blocked: advances the clocks of the domain whose blocked vCPU has the earliest deadline to that
    /// deadline (the TSC offsets of all its vCPUs grow alike, so their TSC and pvclock system time jump together), and
    /// those of every other blocked domain by as much: idle time passes for all idle domains, as run time does
    /// (<see cref="AdvanceOtherClocks"/>), so a domain that wakes every 100 µs does not hold back the clock of one that
    /// sleeps longer. False when no vCPU has a deadline.
    /// </summary>
    private bool SkipToNextDeadline()
    {
        VirtualCpu? next = null;
        ulong wait = ulong.MaxValue;
        foreach (var domain in _domains.Where(d => d.State == DomainState.Blocked))
        {
            foreach (var vcpu in domain.Vcpus)
            {
                if (!vcpu.IsUp || Devices.VcpuApic.NextDeadline(vcpu) is not { } deadline)
                    continue;
                ulong now = GuestTime.SystemTime(vcpu);
                ulong delta = deadline > now ? deadline - now : 0;
                if (delta < wait)
                    (next, wait) = (vcpu, delta);
            }
        }

        if (next is null)
            return false;
        ulong ticks = GuestTime.ToTicks(wait) + 1;
        foreach (var vcpu in next.Domain.Vcpus)
        {
            if (!GuestTime.TryAdvance(vcpu, ticks))
                return false;
        }

        foreach (var domain in _domains.Where(d => d != next.Domain && d.State == DomainState.Blocked).ToList())
        {
            foreach (var vcpu in domain.Vcpus)
                GuestTime.TryAdvance(vcpu, ticks);
            WakeBlocked(domain);
        }

        WakeBlocked(next.Domain);
        return true;
    }

    /// <summary>A processor for a new vCPU.</summary>
    internal IVirtualProcessor CreateProcessor() => _processors.Create(Memory);

    /// <summary>Programs <paramref name="vcpu"/>'s VMCS for the PVH entry state at <paramref name="entry"/>.</summary>
    internal void ProgramPvhVmcs(VirtualCpu vcpu, uint entry)
    {
        var caps = Capabilities;
        var vmcs = vcpu.Vmcs;
        // Every I/O instruction and every RDMSR/WRMSR the MSR bitmap names exits; CPUID, VMCALL,
        // triple fault and EPT violations always do (SDM Vol. 3C §26.1.2, §26.2).
        VmcsBuilder.SetPvh32Guest(vmcs, caps, vcpu.Domain.Ept.Pointer, entry,
            PrimaryProcessorBasedControls.HltExiting | PrimaryProcessorBasedControls.UnconditionalIoExiting
                | PrimaryProcessorBasedControls.UseMsrBitmaps
                | (vcpu.Domain.MaxVcpus > 1 && Scheduling == SchedulerMode.RoundRobin ? PauseExitingIfOffered(caps) : 0)
                | (Scheduling == SchedulerMode.Threaded ? PrimaryProcessorBasedControls.RdtscExiting : 0)
                | ((caps.PrimaryProcessorBased.MayBeOne & (uint)PrimaryProcessorBasedControls.UseTscOffsetting) != 0
                    ? PrimaryProcessorBasedControls.UseTscOffsetting : 0),
            SecondaryProcessorBasedControls.None,
            (_hasPreemptionTimer ? PinBasedControls.ActivateVmxPreemptionTimer : PinBasedControls.None)
                | (Scheduling == SchedulerMode.Threaded ? ExternalInterruptExitingIfOffered(caps) : 0));
        // The masks own the CR4 bits the guest may not set, so that setting one exits and raises #GP (Xen's vmx_update_guest_cr).
        GuestControlRegisters.SetHostMasks(vmcs, caps);
        if (Scheduling == SchedulerMode.Threaded)
            RdtscExit.InterceptTscAux(Memory.GetFrame(_msrBitmap));   // RDTSCP exits: its TSC_AUX is kept per vCPU
        vmcs.Write(VmcsField.MsrBitmapsAddress, _msrBitmap.Value << 12);
        VmcsBuilder.SetHostState(vmcs, _processors.HostState);
    }

    /// <summary>
    /// PAUSE exiting (SDM Vol. 3C §26.1.3) for a domain with several vCPUs: a vCPU spinning on a lock or waiting for
    /// another vCPU (PAUSE is x86's spin-wait hint) hands the processor to the next vCPU at once instead of burning its
    /// slice, as Xen's pause-loop exiting does.
    /// </summary>
    private static PrimaryProcessorBasedControls PauseExitingIfOffered(VmxCapabilities caps) =>
        (caps.PrimaryProcessorBased.MayBeOne & (uint)PrimaryProcessorBasedControls.PauseExiting) != 0
            ? PrimaryProcessorBasedControls.PauseExiting : 0;

    /// <summary>
    /// External-interrupt exiting (SDM Vol. 3C §26.1.1) on the threaded scheduler: another thread's
    /// <see cref="IVirtualProcessor.RequestExit"/> (a kick, an EPT flush, a domain stop) then ends the vCPU's run at once.
    /// </summary>
    private static PinBasedControls ExternalInterruptExitingIfOffered(VmxCapabilities caps) =>
        (caps.PinBased.MayBeOne & (uint)PinBasedControls.ExternalInterruptExiting) != 0
            ? PinBasedControls.ExternalInterruptExiting : 0;

    /// <summary>
    /// Loads the preemption timer before each VM entry so a guest that never exits still yields, and so that the vCPU's
    /// next timer deadline ends the slice on time (the timer counts TSC ticks >> IA32_VMX_MISC[4:0], SDM Vol. 3C §26.5.1).
    /// </summary>
    internal void ArmSliceTimer(VirtualCpu vcpu)
    {
        if (!_hasPreemptionTimer)
            return;
        ulong value = SliceTimerValue;
        ulong? next = vcpu.Timers.NextDeadline;
        var siblings = vcpu.Domain.Vcpus;
        if (siblings.Count > 1)
        {
            // A blocked sibling's Xen timer also ends the slice, so that it wakes on time (the siblings share one clock);
            // a runnable sibling shortens it.
            foreach (var other in siblings)
            {
                if (other == vcpu || !other.IsUp)
                    continue;
                if (!other.IsBlocked)
                    value = SharedSliceTimerValue;
                else if (other.Timers.NextDeadline is { } d && d < (next ?? ulong.MaxValue))
                    next = d;
            }
        }

        if (next is { } deadline)
        {
            ulong now = GuestTime.SystemTime(vcpu);
            ulong ticks = deadline > now ? GuestTime.ToTicks(deadline - now) >> Capabilities.Misc.PreemptionTimerRate : 0;
            value = Math.Clamp(ticks, 1, value);
        }

        vcpu.Vmcs.Write(VmcsField.VmxPreemptionTimerValue, value);
    }

    /// <summary>
    /// True (and the domain crashed) when <paramref name="vcpu"/> ran past <see cref="MaxInstructionsPerVcpu"/>: its
    /// instructions retired and the operations of its batched hypercalls.
    /// </summary>
    internal bool InstructionBudgetExceeded(VirtualCpu vcpu)
    {
        if (MaxInstructionsPerVcpu == 0 || vcpu.InstructionsRetired + vcpu.HypercallOperations <= MaxInstructionsPerVcpu)
            return false;
        vcpu.Domain.Crash(vcpu, $"instruction budget exhausted ({MaxInstructionsPerVcpu} instructions, hypercall operations included, --max-instructions)");
        return true;
    }

    /// <summary>Writes a hypervisor message.</summary>
    internal void Log(string message) => Logger?.Invoke(message);

    /// <summary>Releases every domain and the machine memory.</summary>
    public void Dispose()
    {
        StopAllThreads();
        Pv?.Dispose();
        foreach (var d in _domains)
            d.Dispose();
        _domains.Clear();
        Memory.Dispose();
    }
}
