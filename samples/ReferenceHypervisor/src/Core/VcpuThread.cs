using System.Collections.Concurrent;
using System.Diagnostics;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The host thread of one vCPU on the threaded scheduler (<see cref="SchedulerMode.Threaded"/>), as each Xen vCPU is
/// scheduled on a physical CPU of its own: it runs the vCPU's slices back to back while the vCPU is runnable, and waits on
/// its wake handle while it is blocked (HLT, SCHEDOP_block/poll), down, or its domain is paused. What wakes it: an event
/// upcall or local APIC interrupt (<see cref="VirtualCpu.Kick"/>), a sibling's clock passing its timer deadline, the
/// scheduler skipping a blocked domain's clock to its next deadline, VCPUOP_up, INIT/SIPI (posted to this thread), unpause,
/// stop. No wake-up is lost: the handle is reset before the thread looks at the vCPU's state, and every waker changes the
/// state before it sets the handle, so a wake between the look and the wait leaves the handle set.
/// </summary>
internal sealed class VcpuThread
{
    [ThreadStatic]
    private static VcpuThread? t_current;

    private readonly Thread _thread;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly ConcurrentQueue<Action<VirtualCpu>> _posted = new();
    private volatile bool _stop;
    private int _inSlice;
    private long _postedCount, _appliedCount;

    /// <summary>Creates (does not start) the thread of <paramref name="vcpu"/>.</summary>
    public VcpuThread(VirtualCpu vcpu)
    {
        Vcpu = vcpu;
        _thread = new Thread(Loop) { IsBackground = true, Name = $"vmmkit d{vcpu.Domain.Id}v{vcpu.Id}" };
    }

    /// <summary>The vCPU this thread runs.</summary>
    public VirtualCpu Vcpu { get; }

    /// <summary>The vCPU thread the caller runs on, or null (the scheduler's thread, a service's thread).</summary>
    public static VcpuThread? Current => t_current;

    /// <summary>
    /// Held by the thread except while it waits: <see cref="Machine"/> takes every gate to stop the world (the control
    /// domain's requests are served while no vCPU thread is between two waits).
    /// </summary>
    internal object Gate { get; } = new();

    /// <summary>True when the caller is this thread.</summary>
    public bool IsCurrent => t_current == this;

    /// <summary>The managed id of the host thread (diagnostics and tests).</summary>
    public int ManagedThreadId => _thread.ManagedThreadId;

    /// <summary>True until the thread has ended (its domain stopped or was destroyed, or the machine stopped).</summary>
    public bool IsAlive => _thread.IsAlive;

    /// <summary>True while the thread is inside a slice (<see cref="VirtualCpu.RunSlice"/>).</summary>
    public bool InSlice => Volatile.Read(ref _inSlice) != 0;

    /// <summary>Starts the thread.</summary>
    public void Start() => _thread.Start();

    /// <summary>Wakes the thread from its wait (any thread; harmless when it runs).</summary>
    public void Wake() => _wake.Set();

    /// <summary>
    /// Runs <paramref name="work"/> on this thread before it next looks at the vCPU (between slices): INIT and start-up IPIs
    /// from another vCPU, which reset the vCPU's registers. Called on the thread itself, the work runs at once. Called from
    /// another vCPU's thread, the caller waits until the work is done, as the sender of an IPI waits for its delivery
    /// (Xen pauses the sender until the INIT/SIPI is handled); meanwhile it does the work posted to itself, so two vCPUs
    /// posting to each other do not wait for each other forever, and lets its domain's physmap lock go, so a target waiting
    /// for that lock does not wait for it forever either.
    /// </summary>
    public void Post(Action<VirtualCpu> work)
    {
        if (IsCurrent)
        {
            work(Vcpu);
            return;
        }

        long sequence;
        lock (_posted)
        {
            sequence = ++_postedCount;
            _posted.Enqueue(work);
        }

        Vcpu.RequestSliceEnd();
        if (Current is not { } self)
            return;
        var spin = new SpinWait();
        using var outside = self.Vcpu.Domain.PhysmapLock.Outside();   // the target may wait for the lock meanwhile
        while (Volatile.Read(ref _appliedCount) < sequence && _thread.IsAlive && !_stop
            && Vcpu.Domain.State is DomainState.Running or DomainState.Blocked)
        {
            self.ApplyPosted();
            self.Vcpu.ApplyPendingFlush();
            spin.SpinOnce();
        }
    }

    /// <summary>Does the work other threads posted to this one, in order (on this thread).</summary>
    private void ApplyPosted()
    {
        while (_posted.TryDequeue(out var work))
        {
            work(Vcpu);
            Interlocked.Increment(ref _appliedCount);
        }
    }

    /// <summary>Asks the thread to end (it leaves the guest at its next exit); <see cref="Join"/> waits for it.</summary>
    public void Stop()
    {
        _stop = true;
        Vcpu.RequestSliceEnd();
        _wake.Set();
    }

    /// <summary>Waits for the thread to end.</summary>
    public void Join()
    {
        if (!IsCurrent && _thread.ThreadState != System.Threading.ThreadState.Unstarted)
            _thread.Join();
    }

    /// <summary>
    /// Waits (from another vCPU's thread) until this vCPU is out of its slice, so that its registers may be rewritten
    /// (VCPUOP_initialise of a vCPU INIT took down). The waiter does the work posted to itself and serves EPT flushes
    /// posted to itself meanwhile, as <see cref="Post"/> does, and lets its domain's physmap lock go
    /// (<see cref="PhysmapLock.Outside"/>): this vCPU may be inside its slice waiting for the waiter, in
    /// <see cref="Post"/> (an INIT to all including itself takes it down, then waits for each sibling to take the INIT).
    /// A waiter that an INIT took down meanwhile stops waiting and returns false. A vCPU is inside its slice without being
    /// initialised only while it waits after an INIT it took meanwhile: in <see cref="Post"/>, which the waiter serves, or
    /// here, which then ends; else two vCPUs each initialising the other (a third one having started the target of the
    /// first meanwhile) would wait for each other's slice forever.
    /// </summary>
    /// <returns>True when this vCPU is out of its slice (or its thread ended); false when the waiter gave up.</returns>
    public bool WaitOutOfSlice()
    {
        if (IsCurrent)
            return true;
        var spin = new SpinWait();
        var self = Current;
        // The vCPU may wait for its domain's physmap lock before its slice can end: the waiter lets its own reads go.
        PhysmapLock? held = self?.Vcpu.Domain.PhysmapLock;
        using var outside = held is null ? default : held.Outside();
        while (InSlice && _thread.IsAlive)
        {
            if (self is not null && !self.Vcpu.IsInitialised)
                return false;   // an INIT (done just below, or in an earlier round) took the waiter down
            Vcpu.RequestSliceEnd();
            self?.ApplyPosted();   // the vCPU may wait in Post for the waiter's thread
            self?.Vcpu.ApplyPendingFlush();
            spin.SpinOnce();
        }

        return true;
    }

    private void Loop()
    {
        t_current = this;
        var vcpu = Vcpu;
        var machine = vcpu.Domain.Machine;
        try
        {
            while (true)
            {
                _wake.Reset();
                bool wait;
                lock (Gate)
                {
                    if (_stop)
                        return;
                    Outcome outcome = Step(machine);
                    if (outcome == Outcome.End)
                        return;
                    wait = outcome == Outcome.Wait;
                }

                if (wait)
                {
                    machine.BeforeVcpuWait?.Invoke(vcpu);
                    _wake.Wait();
                }
            }
        }
        catch (Exception e)
        {
            // A hypervisor bug the guest provoked outside the exit loop: this domain stops, the machine carries on.
            vcpu.Domain.Crash(vcpu, $"host exception on the vCPU's thread (a hypervisor bug; the domain is stopped): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
        }
        finally
        {
            Volatile.Write(ref _inSlice, 0);
            machine.SignalScheduler();
        }
    }

    private enum Outcome
    {
        Ran,
        Wait,
        End,
    }

    /// <summary>One look at the vCPU: posted work, then a slice when it can run.</summary>
    private Outcome Step(Machine machine)
    {
        var vcpu = Vcpu;
        var domain = vcpu.Domain;
        vcpu.ClearSliceEndRequest();
        ApplyPosted();
        vcpu.ApplyPendingFlush();
        if (domain.State is DomainState.Shutdown or DomainState.Crashed)
            return Outcome.End;
        if (machine.WorldStopped || domain.PauseCount > 0 || domain.Parking)
            return Outcome.Wait;

        GuestTime.SyncWithDomain(vcpu);
        if (vcpu.IsBlocked)
            Machine.TryWake(vcpu);
        if (!vcpu.IsRunnable)
        {
            domain.UpdateBlockedState();
            machine.SignalScheduler();
            return Outcome.Wait;
        }

        domain.UpdateBlockedState();
        Volatile.Write(ref _inSlice, 1);
        long started = Stopwatch.GetTimestamp();
        vcpu.RunSlice();
        Volatile.Write(ref _inSlice, 0);
        var elapsed = Stopwatch.GetElapsedTime(started);
        lock (domain.SyncRoot)
            domain.CpuTime += elapsed;
        vcpu.Kicked = false;
        GuestTime.SyncWithDomain(vcpu);
        machine.WakeDueSiblings(vcpu);
        domain.UpdateBlockedState();
        if (!vcpu.IsRunnable)
            machine.SignalScheduler();
        return Outcome.Ran;
    }
}
