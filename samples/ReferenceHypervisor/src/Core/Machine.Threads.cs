using VmmKit.Vmx.Emulator;
using VmmKit.ReferenceHypervisor.Devices;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The threaded scheduler (<see cref="SchedulerMode.Threaded"/>): each vCPU on a host thread of its own
/// (<see cref="VcpuThread"/>), while the caller's thread serves the control domain with every vCPU thread parked (a
/// "world stop", as Xen pauses a domain for the toolstack's domctls), moves a blocked domain's clock to its next timer
/// deadline once the services are quiet, and ends the run when no domain can run any more.
/// </summary>
internal sealed partial class Machine
{
    private readonly List<VcpuThread> _threads = [];
    private readonly List<VcpuThread> _gatesHeld = [];
    private readonly ManualResetEventSlim _schedule = new(false);
    private volatile bool _worldStopped;

    /// <summary>True while the scheduler's thread has the vCPU threads parked (they wait instead of running).</summary>
    internal bool WorldStopped => _worldStopped;

    /// <summary>A vCPU blocked or stopped, or a domain stopped: the threaded scheduler looks at the domains again. Any thread.</summary>
    internal void SignalScheduler() => _schedule.Set();

    /// <summary>The threads of the threaded scheduler (tests and diagnostics).</summary>
    internal IReadOnlyList<VcpuThread> Threads => _threads;

    /// <summary>
    /// A guest domain is being built (before its vCPUs' VMCSs are programmed): when no scheduler was chosen
    /// (<see cref="Scheduling"/>, <c>--scheduler</c>, VMMKIT_SCHEDULER), the guests choose for the machine: threaded as soon
    /// as one has more than one vCPU, so that each of its vCPUs runs on a host thread of its own and the domain really
    /// runs in parallel, as on Xen; round-robin while every guest has one (one vCPU gains nothing from a thread of its
    /// own, and the round-robin run is deterministic). A round-robin machine that a later SMP guest moves to threaded
    /// keeps its earlier one-vCPU domains as they are: their VMCSs lack only RDTSC exiting, which a single vCPU does not
    /// need (its TSC cannot go back against a sibling). Lock-step stays round-robin: its undo and replay of a block's
    /// stores assume no other processor writes the same memory meanwhile.
    /// </summary>
    internal void ChooseScheduling(Domain domain)
    {
        if (_scheduling is not null && !_schedulingChosenByGuests)
            return;
        bool lockStep = _processors is ProcessorProviders.EmulatorProcessorProvider { Tier: ExecutionTier.LockStep };
        if (_scheduling is null || (_scheduling == SchedulerMode.RoundRobin && domain.MaxVcpus > 1 && !lockStep))
        {
            _scheduling = domain.MaxVcpus > 1 && !lockStep ? SchedulerMode.Threaded : SchedulerMode.RoundRobin;
            _schedulingChosenByGuests = true;
        }
    }

    private bool _schedulingChosenByGuests;

    private void RunThreaded()
    {
        try
        {
            StartThreads();
            while (true)
            {
                _schedule.Reset();
                long answers = Pv?.Activity.Answers ?? 0;
                Pv?.Poll();
                if (Host is { } host)
                {
                    bool served;
                    StopWorld();
                    try
                    {
                        served = host.Poll();
                        StartThreads();
                    }
                    finally
                    {
                        ResumeWorld();
                    }

                    if (served)
                        continue;
                }

                bool anyRunning = false;
                var blocked = new List<Domain>();
                foreach (var d in _domains)
                {
                    if (d.PauseCount > 0)
                        continue;
                    if (d.State == DomainState.Running)
                        anyRunning = true;
                    else if (d.State == DomainState.Blocked && IsIdle(d))
                        blocked.Add(d);
                }

                if (!anyRunning && blocked.Count == 0 && Host is null && !_domains.Any(d => d.State is DomainState.Running or DomainState.Blocked))
                    return;   // every domain shut down or crashed

                if (blocked.Count > 0)
                {
                    if (Pv?.WaitForServices(answers, hasDeadline: true) == true)
                        continue;
                    if (HostHoldsWork())
                    {
                        // Dom0 is serving a guest's request: wait for its answer rather than skip guest time past it.
                        if (!Host!.WaitForWork())
                            return;
                        continue;
                    }

                    bool skipped = false;
                    foreach (var d in blocked)
                        skipped |= Parked(d, static d => IsIdle(d) && SkipToNextDeadline(d));
                    if (skipped)
                        continue;
                    if (!anyRunning && blocked.Count == _domains.Count(d => d.State is DomainState.Running or DomainState.Blocked))
                    {
                        if (Pv?.WaitForServices(answers, hasDeadline: false) == true)
                            continue;
                        if (Host is { } waiting)
                        {
                            if (waiting.WaitForWork())
                                continue;
                            return;
                        }

                        // Looked at again now: a vCPU may have run and blocked again, with a new deadline, since the list was made.
                        if (!blocked.All(IsIdle) || blocked.Any(d => Parked(d, static d => !IsIdle(d) || SkipToNextDeadline(d))))
                            continue;
                        Pv?.Poll(force: true);
                        foreach (var d in blocked)
                        {
                            Parked(d, static d =>
                            {
                                if (IsIdle(d) && !SkipToNextDeadline(d))
                                    d.Crash(d.Vcpus[0], "every vCPU is blocked with no event pending and no timer set: nothing can wake it");
                                return true;
                            });
                        }

                        continue;
                    }
                }

                if (Host is { } idle && !anyRunning && blocked.Count == 0)
                {
                    if (!idle.WaitForWork())
                        return;
                    continue;
                }

                _schedule.Wait(Host is null ? 100 : 10);
            }
        }
        finally
        {
            StopAllThreads();
            Pv?.Poll(force: true);
        }
    }

    /// <summary>
    /// Runs <paramref name="decide"/> with the threads of <paramref name="domain"/>'s vCPUs parked at their gates (each ends
    /// the slice or the look at its vCPU it is in, and starts none until <paramref name="decide"/> is done), so that what it sees of the vCPUs (blocked, pending, deadlines)
    /// does not change under it: a timer firing on a vCPU's thread clears its deadline a moment before it marks the event.
    /// </summary>
    private static bool Parked(Domain domain, Func<Domain, bool> decide)
    {
        var threads = new List<VcpuThread>(domain.Vcpus.Count);
        foreach (var v in domain.Vcpus)
        {
            if (v.Thread is { } t)
                threads.Add(t);
        }

        // The threads start no slice while they are parked for (as in a world stop), or the gates, taken all at once
        // (EnterGates), might never be free together while the vCPUs run.
        var held = new List<VcpuThread>(threads.Count);
        domain.Parking = true;
        try
        {
            foreach (var t in threads)
                t.Vcpu.RequestSliceEnd();
            EnterGates(threads, held);
            return decide(domain);
        }
        finally
        {
            foreach (var t in held)
                Monitor.Exit(t.Gate);
            domain.Parking = false;
            foreach (var t in threads)
                t.Wake();
        }
    }

    /// <summary>
    /// Takes the gates of <paramref name="threads"/> all at once, into <paramref name="held"/>: never one while it waits
    /// for another. A vCPU that posts an INIT or SIPI to a sibling waits, inside its slice and so holding its own gate,
    /// until the sibling's thread has done it, which needs the sibling's gate (<see cref="VcpuThread.Post"/>). Holding
    /// the sibling's gate while waiting for the sender's would wait forever, and with it every domain. So when a gate is
    /// taken, every gate held so far is let go, the taken one waited for, and the round starts again.
    /// </summary>
    private static void EnterGates(List<VcpuThread> threads, List<VcpuThread> held)
    {
        while (true)
        {
            VcpuThread? busy = null;
            foreach (var t in threads)
            {
                if (!Monitor.TryEnter(t.Gate))
                {
                    busy = t;
                    break;
                }

                held.Add(t);
            }

            if (busy is null)
                return;
            foreach (var t in held)
                Monitor.Exit(t.Gate);
            held.Clear();
            lock (busy.Gate)
            {
                // only waited for: its slice is over (or its wait for a sibling), and the round starts again
            }
        }
    }

    /// <summary>
    /// True when every vCPU of the live <paramref name="domain"/> is down or blocked with nothing pending (looked at vCPU by
    /// vCPU, not through the domain's state, which a thread that just woke has not updated yet).
    /// </summary>
    private static bool IsIdle(Domain domain)
    {
        if (domain.State is not (DomainState.Running or DomainState.Blocked))
            return false;
        foreach (var v in domain.Vcpus)
        {
            if (v.IsUp && (!v.IsBlocked || v.Kicked || v.HasPendingInterrupt))
                return false;
        }

        return true;
    }

    /// <summary>
    /// Every vCPU of <paramref name="domain"/> is blocked: raises the domain's clock to the earliest deadline of its vCPUs
    /// and wakes them (each moves its TSC up to the clock and fires what is due). False when no vCPU has a deadline.
    /// </summary>
    private static bool SkipToNextDeadline(Domain domain)
    {
        ulong? earliest = null;
        foreach (var v in domain.Vcpus)
        {
            if (v.IsUp && VcpuApic.NextDeadline(v) is { } deadline && deadline < (earliest ?? ulong.MaxValue))
                earliest = deadline;
        }

        if (earliest is not { } next)
            return false;
        ulong target = GuestTime.ToTicks(next) + 1;
        domain.PublishClock(target);
        foreach (var v in domain.Vcpus)
            v.Thread?.Wake();
        return true;
    }

    /// <summary>
    /// After <paramref name="ran"/>'s slice (its thread): a blocked sibling whose timer deadline the domain's clock has
    /// passed is woken, as a sibling's timer ends a slice on one shared processor.
    /// </summary>
    internal void WakeDueSiblings(VirtualCpu ran)
    {
        var siblings = ran.Domain.Vcpus;
        if (siblings.Count == 1)
            return;
        ulong now = GuestTime.ToNanoseconds(ran.Domain.Clock);
        foreach (var v in siblings)
        {
            if (v != ran && v.IsUp && v.IsBlocked && VcpuApic.NextDeadline(v) is { } deadline && deadline <= now)
                v.Thread?.Wake();
        }
    }

    /// <summary>Gives every vCPU of a live domain that has no thread yet its own, and starts it.</summary>
    private void StartThreads()
    {
        foreach (var d in _domains)
        {
            if (d.State is DomainState.Shutdown or DomainState.Crashed)
                continue;
            foreach (var v in d.Vcpus)
            {
                if (v.Thread is not null)
                    continue;
                var thread = new VcpuThread(v);
                v.Thread = thread;
                _threads.Add(thread);
                thread.Start();
            }
        }
    }

    /// <summary>Parks every vCPU thread: each leaves the guest, and the scheduler holds its gate until <see cref="ResumeWorld"/>.</summary>
    private void StopWorld()
    {
        _worldStopped = true;
        foreach (var t in _threads)
            t.Vcpu.RequestSliceEnd();
        EnterGates(_threads, _gatesHeld);
    }

    /// <summary>Lets the vCPU threads run again.</summary>
    private void ResumeWorld()
    {
        _worldStopped = false;
        foreach (var t in _gatesHeld)
            Monitor.Exit(t.Gate);
        _gatesHeld.Clear();
        foreach (var t in _threads)
            t.Wake();
    }

    /// <summary>Ends the threads of <paramref name="domain"/>'s vCPUs and waits for them (before it is released).</summary>
    internal void StopThreadsOf(Domain domain)
    {
        foreach (var v in domain.Vcpus)
        {
            if (v.Thread is not { } t)
                continue;
            t.Stop();
            int held = _gatesHeld.IndexOf(t);
            if (held >= 0)
            {
                _gatesHeld.RemoveAt(held);
                Monitor.Exit(t.Gate);
            }

            t.Join();
            _threads.Remove(t);
            v.Thread = null;
        }
    }

    /// <summary>Ends every vCPU thread and waits for them.</summary>
    private void StopAllThreads()
    {
        foreach (var t in _threads)
            t.Stop();
        foreach (var t in _gatesHeld)
            Monitor.Exit(t.Gate);
        _gatesHeld.Clear();
        foreach (var t in _threads)
        {
            t.Join();
            t.Vcpu.Thread = null;
        }

        _threads.Clear();
    }
}
