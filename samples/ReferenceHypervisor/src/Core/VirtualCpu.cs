using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// One vCPU: its VMCS, the virtual processor that runs it, and the loop that turns VM exits into
/// calls of the exit handlers (<see cref="ExitHandlers"/>, one small method per exit reason).
/// </summary>
internal sealed class VirtualCpu
{
    private readonly ulong[] _exitCounts = new ulong[ExitHandlers.TableSize];

    /// <summary>Creates vCPU <paramref name="id"/> of <paramref name="domain"/> on <paramref name="processor"/>.</summary>
    public VirtualCpu(Domain domain, int id, IVirtualProcessor processor)
    {
        Domain = domain;
        Id = id;
        Processor = processor;
        // The vCPU's own guest-physical accessor: its translation cache is used by this vCPU's thread alone.
        Physical = new GuestPhysicalMemory(domain.Machine.Memory, domain.Ept.Pointer);
        LinearMemory = new GuestLinearMemory(Physical, () => Vmcs.GuestPagingRegisters);
        Apic = Devices.VcpuApic.Create(this);
    }

    /// <summary>The vCPU's local APIC (xAPIC at 0xFEE00000; Devices/VcpuApic.cs wires it into the exit loop).</summary>
    public VmmKit.Devices.LocalApic Apic { get; }

    /// <summary>
    /// An interrupt waits for the guest: the event upcall (with a callback vector) or a local APIC interrupt or NMI. What
    /// wakes a halted or blocked vCPU (Xen's <c>hvm_local_events_need_delivery</c>).
    /// </summary>
    public bool HasPendingInterrupt => (UpcallPending && Domain.CallbackVector is not null) || Devices.VcpuApic.HasPendingInterrupt(this);

    /// <summary>The owning domain.</summary>
    public Domain Domain { get; }

    /// <summary>vCPU number within the domain.</summary>
    public int Id { get; }

    /// <summary>The VMCS this vCPU runs with (one per vCPU, as on hardware).</summary>
    public Vmcs Vmcs { get; } = new();

    /// <summary>The processor executing the guest.</summary>
    public IVirtualProcessor Processor { get; }

    /// <summary>Guest-physical access through the domain's EPT, with a translation cache of this vCPU's own (flushed by <see cref="InvalidateEpt"/>).</summary>
    public GuestPhysicalMemory Physical { get; }

    /// <summary>Guest memory by linear address (the guest's paging, then the EPT), for hypercall arguments.</summary>
    public GuestLinearMemory LinearMemory { get; }

    /// <summary>The guest registers (valid between exits).</summary>
    public ref GuestRegisters Registers => ref Processor.Registers;

    /// <summary>Set by a hypercall handler that must end the slice (yield, block, shutdown).</summary>
    public ExitAction PendingAction { get; set; }

    /// <summary>The vCPU's clock: pvclock, the registered vcpu_info and the runstate.</summary>
    public VcpuTime Time { get; } = new();

    /// <summary>
    /// IA32_TSC_AUX (RDTSCP's ECX) while the threaded scheduler intercepts it along with RDTSCP (<see cref="RdtscExit"/>);
    /// on the round-robin scheduler the MSR passes through to the processor and this stays unused.
    /// </summary>
    public uint TscAux { get; set; }

    private volatile bool _isBlocked, _isUp = true, _isInitialised = true, _kicked;

    /// <summary>True while the vCPU waits for an event.</summary>
    public bool IsBlocked { get => _isBlocked; set => _isBlocked = value; }

    /// <summary>
    /// False while the vCPU is down (Xen's <c>_VPF_down</c>): a secondary vCPU waiting for INIT/SIPI or VCPUOP_up, a vCPU
    /// that halted with interrupts disabled or went down by VCPUOP_down. A down vCPU is never scheduled.
    /// </summary>
    public bool IsUp { get => _isUp; set => _isUp = value; }

    /// <summary>
    /// Xen's <c>v->is_initialised</c>: the vCPU has a register state to run (the boot vCPU from the start, a secondary
    /// one after a start-up IPI or VCPUOP_initialise). INIT clears it; a start-up IPI is accepted only while it is clear
    /// (the wait-for-SIPI state, SDM Vol. 3A §9.4.4).
    /// </summary>
    public bool IsInitialised { get => _isInitialised; set => _isInitialised = value; }

    /// <summary>True when the scheduler may run the vCPU: up and not blocked.</summary>
    public bool IsRunnable => IsUp && !IsBlocked;

    /// <summary>The singleshot timer and the SCHEDOP_poll state.</summary>
    public VcpuTimers Timers { get; } = new();

    /// <summary><c>vcpu_info.evtchn_upcall_pending</c>: an event waits for the guest's upcall handler.</summary>
    public bool UpcallPending
    {
        get
        {
            Span<byte> info = Time.VcpuInfo(this);
            return !info.IsEmpty && Volatile.Read(ref info[0]) != 0;
        }
    }

    /// <summary>
    /// An event was marked pending for this vCPU (Xen's <c>vcpu_kick</c>): the scheduler looks at it again. On the threaded
    /// scheduler the vCPU's thread wakes from its wait, and a vCPU in the guest leaves it at once (the processor's
    /// <see cref="IVirtualProcessor.RequestExit"/>) so that the interrupt is injected at the next VM entry. Any thread.
    /// </summary>
    public void Kick()
    {
        _kicked = true;
        if (Thread is not { } thread)
            return;
        thread.Wake();
        if (!thread.IsCurrent)
            Processor.RequestExit();
    }

    /// <summary>Set by <see cref="Kick"/>, cleared by the scheduler.</summary>
    public bool Kicked { get => _kicked; set => _kicked = value; }

    /// <summary>The host thread that runs this vCPU on the threaded scheduler; null on the round-robin one.</summary>
    public VcpuThread? Thread { get; internal set; }

    private volatile bool _sliceEndRequested;
    private int _inRun;
    private long _flushRequested, _flushDone;

    /// <summary>
    /// Asks the vCPU to end its slice at its next exit (threaded scheduler: a domain stop, a world stop for the control
    /// domain, posted INIT/SIPI work), waking it when it waits. Any thread; nothing on the round-robin scheduler, where
    /// the slice is already over when another vCPU or the host acts.
    /// </summary>
    public void RequestSliceEnd()
    {
        if (Thread is not { } thread)
            return;
        _sliceEndRequested = true;
        thread.Wake();
        if (!thread.IsCurrent)
            Processor.RequestExit();
    }

    /// <summary>The vCPU's thread takes a slice-end request before it looks at its state again.</summary>
    internal void ClearSliceEndRequest() => _sliceEndRequested = false;

    /// <summary>
    /// INVEPT for this vCPU after its domain's EPT changed (a mapping removed or changed, Xen's p2m flush): the processor's
    /// cached translations and this vCPU's own guest-physical cache. On the round-robin scheduler, or on the vCPU's own
    /// thread, at once; from another thread the request is posted, the vCPU is made to leave the guest, and the caller
    /// waits until it has flushed or is out of the guest (it flushes before its next entry), as Xen's flush waits for the
    /// other processors, so that no vCPU still uses a translation of the old mapping when the hypercall returns.
    /// </summary>
    public void InvalidateEpt()
    {
        if (Thread is not { } thread || thread.IsCurrent)
        {
            FlushTranslations();
            return;
        }

        long request = Interlocked.Increment(ref _flushRequested);
        if (Volatile.Read(ref _inRun) == 0)
            return;   // not in the guest: it sees the request before its next entry (ApplyPendingFlush after _inRun is set)
        Processor.RequestExit();
        var spin = new SpinWait();
        var self = VcpuThread.Current?.Vcpu;
        while (Volatile.Read(ref _inRun) != 0 && Volatile.Read(ref _flushDone) < request)
        {
            self?.ApplyPendingFlush();   // two vCPUs flushing each other at once: each serves the other's request
            spin.SpinOnce();
        }
    }

    /// <summary>Applies a flush another thread posted with <see cref="InvalidateEpt"/> (on this vCPU's own thread).</summary>
    internal void ApplyPendingFlush()
    {
        long requested = Volatile.Read(ref _flushRequested);
        if (requested == Volatile.Read(ref _flushDone))
            return;
        FlushTranslations();
        Volatile.Write(ref _flushDone, requested);
    }

    private void FlushTranslations()
    {
        Physical.InvalidateSingleContext();
        Processor.InvalidateEpt(InveptType.SingleContext, Domain.Ept.Pointer);
    }

    /// <summary>
    /// One VM entry, with the domain's physmap let go while the guest runs (a change of it waits for the vCPUs inside the
    /// guest to flush, not for their slices to end).
    /// </summary>
    private VmExit RunGuest(bool threaded)
    {
        using (Domain.PhysmapLock.Outside())
            return threaded ? EnterGuest() : Processor.Run(Vmcs);
    }

    /// <summary>One VM entry on the threaded scheduler: marked in the guest, then any flush posted meanwhile applied (their order pairs with <see cref="InvalidateEpt"/>).</summary>
    private VmExit EnterGuest()
    {
        Interlocked.Exchange(ref _inRun, 1);
        ApplyPendingFlush();
        try
        {
            return Processor.Run(Vmcs);
        }
        finally
        {
            Volatile.Write(ref _inRun, 0);
        }
    }

    /// <summary>The most recent exit, for diagnostics.</summary>
    public VmExit LastExit { get; private set; }

    /// <summary>Preemption checks the current hypercall dispatch has made (<see cref="Hypercalls.HypercallPreemption"/>).</summary>
    internal uint HypercallPreemptChecks;

    /// <summary>
    /// Work of long hypercalls (grant-table batches, multicalls, console writes) this vCPU has asked for: one for each
    /// preemption check they make (per operation of a batch, per 32 unmaps, per 128-byte chunk of a write). Charged
    /// with <see cref="InstructionsRetired"/> against <see cref="Machine.MaxInstructionsPerVcpu"/>, since one VMCALL
    /// retires one instruction whatever its length; guest time does not follow it.
    /// </summary>
    public ulong HypercallOperations { get; internal set; }

    /// <summary>Exits handled so far, for statistics and benchmarks.</summary>
    public ulong ExitCount { get; private set; }

    /// <summary>Guest instructions retired by this vCPU's processor.</summary>
    public ulong InstructionsRetired => Processor.InstructionsRetired;

    /// <summary>Number of exits seen for <paramref name="reason"/>.</summary>
    public ulong ExitsFor(VmxExitReason reason) => (uint)reason < (uint)_exitCounts.Length ? _exitCounts[(int)reason] : 0;

    /// <summary>
    /// Runs the guest until the slice ends (a handler yields or blocks, the preemption timer fires) or the domain stops.
    /// The instruction budget is checked after every exit, whatever the handler decided. A host exception out of the
    /// processor or a handler is a hypervisor bug the guest provoked: it crashes this domain with a dump (Xen's
    /// <c>domain_crash</c>), never the process, and the other domains carry on.
    /// </summary>
    public ExitAction RunSlice()
    {
        var machine = Domain.Machine;
        // Out of the guest, the vCPU holds its domain's physmap to read (PhysmapLock): no page it or a hypercall of its
        // translates is removed and freed before the access, since a flush waits only for vCPUs inside the guest.
        using var physmap = Domain.PhysmapLock.Read();
        Time.BeginSlice(this);
        SetPauseExiting(true);
        try
        {
            bool threaded = Thread is not null;
            while (true)
            {
                if (threaded)
                    GuestTime.SyncWithDomain(this);
                Timers.FireDue(this, GuestTime.SystemTime(this));
                DeliverUpcall();
                machine.ArmSliceTimer(this);
                Devices.VcpuApic.BeforeEntry(this);
                VmExit exit = RunGuest(threaded);
                LastExit = exit;
                ExitCount++;
                if (exit.Outcome != VmExitOutcome.VmExit)
                {
                    Domain.Crash(this, $"VM entry failed: {exit}");
                    return ExitAction.Stop;
                }

                uint reason = (uint)exit.Reason;
                if (reason < (uint)_exitCounts.Length)
                    _exitCounts[reason]++;
                machine.Trace?.Invoke(this, exit);

                if (_pauseExitingOff && exit.Reason != VmxExitReason.Pause)
                    SetPauseExiting(true);    // this exit may have woken a sibling (an IPI, an event): spinning yields again
                ExitAction action = ExitHandlers.Dispatch(this, in exit);
                machine.Pv?.Poll();
                if (Domain.State is DomainState.Shutdown or DomainState.Crashed)
                    return ExitAction.Stop;
                if (machine.InstructionBudgetExceeded(this))
                    return ExitAction.Stop;
                if (!IsUp)
                    return ExitAction.Yield;   // INIT, VCPUOP_down or HLT with IF = 0 took this vCPU down
                if (action != ExitAction.Resume)
                    return action;
                if (_sliceEndRequested)
                    return ExitAction.Yield;   // threaded scheduler: another thread needs this vCPU out of the guest
            }
        }
        catch (Exception e)
        {
            Domain.Crash(this, $"host exception while running the vCPU (a hypervisor bug; the domain is stopped): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            return ExitAction.Stop;
        }
    }

    /// <summary>
    /// The event upcall of HVM_PARAM_CALLBACK_IRQ's vector type (Xen's <c>hvm_vcpu_has_pending_irq</c> and
    /// <c>vmx_intr_assist</c>): while <c>evtchn_upcall_pending</c> is set, the callback vector is injected as an external
    /// interrupt at VM entry when the guest can take one (RFLAGS.IF = 1, no STI or MOV SS blocking, SDM Vol. 3C
    /// §27.3.1.5); otherwise it stays pending and interrupt-window exiting (SDM Vol. 3C §26.7.5) asks for the exit
    /// at the first instruction boundary where it can, when the processor offers that control.
    /// </summary>
    private void DeliverUpcall()
    {
        if (Domain.CallbackVector is not { } vector || !UpcallPending)
        {
            SetInterruptWindowExiting(false);
            return;
        }

        if (Vmcs.CanInjectExternalInterrupt)
        {
            Vmcs.InjectExternalInterrupt(vector);
            SetInterruptWindowExiting(false);
        }
        else
        {
            SetInterruptWindowExiting(true);
        }
    }

    private bool _pauseExitingOff;

    /// <summary>
    /// Turns PAUSE exiting back on (<paramref name="on"/>) or off for the rest of the slice, in a domain whose VMCS uses it
    /// (several vCPUs). A PAUSE that finds no sibling to hand the processor to turns it off, so that a spin loop on a
    /// vCPU alone does not exit at every iteration, as Xen's pause-loop exiting exits only for long spins; the next
    /// slice, or any other exit (which may have woken a sibling), turns it on again.
    /// </summary>
    public void SetPauseExiting(bool on)
    {
        if (_pauseExitingOff != on || Domain.MaxVcpus <= 1)
            return;
        const uint bit = (uint)PrimaryProcessorBasedControls.PauseExiting;
        if ((Domain.Machine.Capabilities.PrimaryProcessorBased.MayBeOne & bit) == 0)
            return;
        ulong controls = Vmcs.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls);
        Vmcs.Write(VmcsField.PrimaryProcessorBasedVmExecutionControls, on ? controls | bit : controls & ~(ulong)bit);
        _pauseExitingOff = !on;
    }

    private void SetInterruptWindowExiting(bool on)
    {
        const uint bit = (uint)PrimaryProcessorBasedControls.InterruptWindowExiting;
        if ((Domain.Machine.Capabilities.PrimaryProcessorBased.MayBeOne & bit) == 0)
            return;
        ulong controls = Vmcs.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls);
        ulong wanted = on ? controls | bit : controls & ~(ulong)bit;
        if (wanted != controls)
            Vmcs.Write(VmcsField.PrimaryProcessorBasedVmExecutionControls, wanted);
    }

    /// <summary>
    /// Moves RIP past the instruction that exited (VM-exit instruction length, SDM Vol. 3C §28.2.5). The instruction is
    /// now complete, so blocking by STI or MOV SS ends with it (SDM Vol. 3C table 25-3), as Xen's
    /// <c>vmx_update_guest_eip</c> clears it: an interrupt pending after <c>sti; hlt</c> is taken after the HLT.
    /// </summary>
    public void AdvanceRip(in VmExit exit)
    {
        ulong rip = Vmcs.Read(VmcsField.GuestRip) + exit.InstructionLength;
        if (GuestMode != GuestX86Mode.Long64)
            rip &= 0xFFFF_FFFF;
        Vmcs.Write(VmcsField.GuestRip, rip);
        ulong interruptibility = Vmcs.Read(VmcsField.GuestInterruptibilityState);
        if ((interruptibility & 3) != 0)
            Vmcs.Write(VmcsField.GuestInterruptibilityState, interruptibility & ~3ul);
    }

    /// <summary>Injects a hardware exception on the next VM entry (SDM Vol. 3C §27.6, §25.8.3).</summary>
    public void InjectException(byte vector, uint? errorCode = null) => Vmcs.InjectHardwareException(vector, errorCode);

    /// <summary>Injects #GP(0), as Xen does for a bad MSR access.</summary>
    public void InjectGeneralProtection() => InjectException(13, 0);

    /// <summary>The guest's execution mode, which selects the hypercall ABI (the numbers are the same in both enums).</summary>
    public GuestX86Mode GuestMode => (GuestX86Mode)Vmcs.GuestMode;

    /// <summary>Current privilege level: SS.DPL (SDM Vol. 3C §25.4.1).</summary>
    public int Cpl => Vmcs.GuestCpl;
}
