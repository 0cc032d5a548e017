using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

/// <summary>
/// A domain that lives in the host process (a Dom0 toolstack, xenstored, a PV backend running
/// in-process with a VmmKit hypervisor). It owns a <c>shared_info</c> page in host memory, uses
/// the 2-level ABI like a guest would, and its upcall runs on the sending thread: it takes each
/// pending, unmasked port (mask, then clear pending, as Linux's <c>mask_ack</c>) and hands it to
/// the <see cref="InProcessEventChannelClient"/> that bound it. Open handles with <see cref="Open"/>.
/// </summary>
public sealed unsafe class EventChannelHostDomain : IEventChannelUpcall, IDisposable
{
    private readonly EventChannelHypervisor _hypervisor;
    private readonly InProcessEventChannelClient?[] _owners;
    private readonly int[] _orphans;
    private readonly int[] _inHand;
    private int _eventsInHand;
    private byte* _sharedInfo;

    /// <summary>Creates the domain in <paramref name="hypervisor"/>.</summary>
    /// <param name="hypervisor">The hypervisor.</param>
    /// <param name="id">The domain id (0 for Dom0).</param>
    /// <param name="isControlDomain">Xen's <c>is_control_domain</c> (Dom0).</param>
    /// <param name="maxPorts">Ports the domain may use (at most 4096, the 2-level limit).</param>
    public EventChannelHostDomain(EventChannelHypervisor hypervisor, ushort id, bool isControlDomain = false, int maxPorts = 1024)
    {
        ArgumentNullException.ThrowIfNull(hypervisor);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxPorts, TwoLevelAbi.NrChannels64);
        _hypervisor = hypervisor;
        _owners = new InProcessEventChannelClient?[maxPorts];
        _orphans = new int[maxPorts];
        _inHand = new int[maxPorts];
        _sharedInfo = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        NativeMemory.Clear(_sharedInfo, 4096);
        Domain = hypervisor.CreateDomain(new EventChannelDomainOptions
        {
            Id = id, VcpuCount = 1, Upcall = this, MaxPorts = maxPorts, IsControlDomain = isControlDomain,
        });
        Domain.SetSharedInfo(_sharedInfo);
    }

    /// <summary>The domain's event channel state.</summary>
    public EventChannelDomain Domain { get; }

    /// <summary>The hypervisor.</summary>
    public EventChannelHypervisor Hypervisor => _hypervisor;

    /// <summary>
    /// Events taken from <c>shared_info</c> (their port masked, as Linux's <c>mask_ack</c>) and not yet served: counted
    /// from the moment the upcall hands a port to its handle until the handle unmasks or unbinds it. A host scheduler
    /// reads it to know that a backend holds work a guest waits for, even before the backend's task has run.
    /// </summary>
    public int EventsInHand => Volatile.Read(ref _eventsInHand);

    /// <summary><c>xenevtchn_open</c>: a new handle in this domain.</summary>
    /// <returns>The handle.</returns>
    public InProcessEventChannelClient Open()
    {
        ObjectDisposedException.ThrowIf(_sharedInfo == null, this);
        return new InProcessEventChannelClient(this);
    }

    // A port that fired before its handle recorded it (bind_interdomain sets the new port pending
    // at once) is an orphan: exactly one of the taker and SetOwner clears the flag and delivers it.
    internal void SetOwner(uint port, InProcessEventChannelClient? owner)
    {
        Volatile.Write(ref _owners[port], owner);
        if (owner is null)
        {
            Volatile.Write(ref _orphans[port], 0);
            Served(port);
        }
        else if (Interlocked.Exchange(ref _orphans[port], 0) != 0)
            owner.Deliver(port);
    }

    private void Hand(uint port)
    {
        if (port >= (uint)_owners.Length)
            return;
        if (Interlocked.Exchange(ref _inHand[port], 1) == 0)
            Interlocked.Increment(ref _eventsInHand);
        if (Volatile.Read(ref _owners[port]) is { } owner)
        {
            owner.Deliver(port);
            return;
        }
        Volatile.Write(ref _orphans[port], 1);
        if (Volatile.Read(ref _owners[port]) is { } late && Interlocked.Exchange(ref _orphans[port], 0) != 0)
            late.Deliver(port);
    }


    /// <summary>The upcall: what a guest's event handler does, run on the thread that raised it.</summary>
    /// <param name="domain">This domain.</param>
    /// <param name="vcpu">0.</param>
    void IEventChannelUpcall.RaiseUpcall(EventChannelDomain domain, int vcpu)
    {
        byte* shared = _sharedInfo;
        if (shared == null)
            return;
        ulong* pending = (ulong*)(shared + TwoLevelAbi.PendingOffset64);
        ulong* mask = (ulong*)(shared + TwoLevelAbi.MaskOffset64);
        ulong* selector = (ulong*)(shared + TwoLevelAbi.PendingSelOffset64);
        while (true)
        {
            Volatile.Write(ref *shared, (byte)0); // vcpu_info[0].evtchn_upcall_pending = 0
            ulong words = Interlocked.Exchange(ref *selector, 0);
            if (words == 0)
                return;
            while (words != 0)
            {
                int w = System.Numerics.BitOperations.TrailingZeroCount(words);
                words &= words - 1;
                ulong bits = Volatile.Read(ref pending[w]) & ~Volatile.Read(ref mask[w]);
                while (bits != 0)
                {
                    int b = System.Numerics.BitOperations.TrailingZeroCount(bits);
                    bits &= bits - 1;
                    ulong bit = 1UL << b;
                    if ((Interlocked.Or(ref mask[w], bit) & bit) != 0)
                        continue; // already taken; it stays pending for the next unmask
                    if ((Interlocked.And(ref pending[w], ~bit) & bit) == 0)
                    {
                        // Another taker consumed it and the client unmasked meanwhile: undo our mask
                        // like a guest's unmask, and revisit the word if an event slipped in.
                        Interlocked.And(ref mask[w], ~bit);
                        if ((Volatile.Read(ref pending[w]) & bit) != 0)
                            Interlocked.Or(ref *selector, 1UL << w);
                        continue;
                    }
                    uint port = (uint)(w * 64 + b);
                    Hand(port);
                }
            }
        }
    }

    /// <summary>Destroys the domain (every port is closed) and frees its <c>shared_info</c> page.</summary>
    public void Dispose()
    {
        if (_sharedInfo == null)
            return;
        _hypervisor.DestroyDomain(Domain);
        byte* page = _sharedInfo;
        _sharedInfo = null;
        NativeMemory.AlignedFree(page);
    }

    internal long Unmask(uint port)
    {
        // Served before the unmask: a pending event the unmask re-raises is handed (and counted) again.
        Served(port);
        return _hypervisor.Unmask(Domain, port);
    }

    private void Served(uint port)
    {
        if (port < (uint)_inHand.Length && Interlocked.Exchange(ref _inHand[port], 0) != 0)
            Interlocked.Decrement(ref _eventsInHand);
    }

    internal static ushort Self => DomainId.Self;
}
