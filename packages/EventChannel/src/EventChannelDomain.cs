using System.Runtime.CompilerServices;
using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

/// <summary>
/// One domain's event channels: its port table (Xen's buckets of <c>struct evtchn</c>), its vCPUs'
/// <c>vcpu_info</c> locations and VIRQ bindings, and the ABI in use. Created by
/// <see cref="EventChannelHypervisor.CreateDomain"/>; operations go through the hypervisor.
/// </summary>
public sealed unsafe class EventChannelDomain
{
    /// <summary>Ports per bucket (Xen's <c>EVTCHNS_PER_BUCKET</c> on 64-bit builds).</summary>
    internal const int PortsPerBucket = 64;

    private readonly Channel[]?[] _buckets;
    private int _validPorts; // Xen's valid_evtchns: buckets are published before it grows (XSA-340)
    private readonly VcpuEventState[] _vcpus;
    private FifoAbi? _fifo;
    private nint _sharedInfo;
    private bool _compat;

    internal EventChannelDomain(EventChannelHypervisor hypervisor, EventChannelDomainOptions options, long ordinal)
    {
        Hypervisor = hypervisor;
        Id = options.Id;
        VcpuCount = options.VcpuCount;
        Upcall = options.Upcall;
        FrameMapper = options.FrameMapper;
        MaxPorts = options.MaxPorts;
        IsControlDomain = options.IsControlDomain;
        DeviceModelFor = options.DeviceModelFor;
        Ordinal = ordinal;
        _buckets = new Channel[]?[(Math.Min(MaxPorts, FifoEventWord.NrChannels) + PortsPerBucket - 1) / PortsPerBucket];
        _vcpus = new VcpuEventState[VcpuCount];
        for (int v = 0; v < VcpuCount; v++)
            _vcpus[v] = new VcpuEventState(v);
    }

    /// <summary>The hypervisor that owns the domain.</summary>
    public EventChannelHypervisor Hypervisor { get; }

    /// <summary>The domain id.</summary>
    public ushort Id { get; }

    /// <summary>Number of vCPUs.</summary>
    public int VcpuCount { get; }

    /// <summary>Ports the domain may use (Xen's <c>max_evtchn_port + 1</c>).</summary>
    public int MaxPorts { get; }

    /// <summary>Xen's <c>is_control_domain</c>.</summary>
    public bool IsControlDomain { get; }

    /// <summary>The domain this one is device model for (Xen's <c>d-&gt;target</c>).</summary>
    public ushort? DeviceModelFor { get; }

    /// <summary>
    /// Xen's <c>controller_pause_count != 0</c>: the toolstack paused the domain. EVTCHNOP_reset of
    /// another domain is refused (-EINVAL) unless it is paused. Set by the hypervisor.
    /// </summary>
    public bool IsPausedByController { get; set; }

    /// <summary>The ABI in use.</summary>
    public EventChannelAbiKind Abi => Volatile.Read(ref _fifo) is null ? EventChannelAbiKind.TwoLevel : EventChannelAbiKind.Fifo;

    /// <summary>True after <see cref="EventChannelHypervisor.DestroyDomain"/>.</summary>
    public bool IsDying { get; internal set; }

    // A reset (EventChannelHypervisor.Reset) is running; under EventLock.
    internal bool ResetInProgress { get; set; }

    internal IEventChannelUpcall Upcall { get; }
    internal IGuestFrameMapper? FrameMapper { get; }
    internal long Ordinal { get; }
    internal readonly Lock EventLock = new();
    internal nint SharedInfo => Volatile.Read(ref _sharedInfo);
    internal bool Compat => _compat;
    internal FifoAbi? Fifo => Volatile.Read(ref _fifo);
    internal VcpuEventState Vcpu(int vcpu) => _vcpus[vcpu];
    internal int ValidPorts => Volatile.Read(ref _validPorts);

    /// <summary>
    /// Tells the package where the domain's <c>shared_info</c> page is (the page the guest maps with
    /// <c>XENMAPSPACE_shared_info</c>), and the guest's width: Xen latches the 64-bit or 32-bit
    /// layout from the guest's mode (<c>hvm_latch_shinfo_size</c>). vCPUs below 32 that did not
    /// register a <c>vcpu_info</c> elsewhere use <c>shared_info.vcpu_info[vcpu]</c>.
    /// </summary>
    /// <param name="page">Host address of the 4 KiB page; it must stay valid while the domain lives.</param>
    /// <param name="compat">True for a 32-bit guest (<c>xen_ulong_t</c> of 32 bits, 1024 2-level ports).</param>
    public void SetSharedInfo(byte* page, bool compat = false)
    {
        lock (EventLock)
        {
            _compat = compat;
            Volatile.Write(ref _sharedInfo, (nint)page);
            for (int v = 0; v < Math.Min(VcpuCount, 32); v++)
            {
                if (!_vcpus[v].VcpuInfoRegistered)
                    Volatile.Write(ref _vcpus[v].VcpuInfo, page == null ? 0 : (nint)(page + v * 64));
            }
        }
    }

    /// <summary>
    /// Moves a vCPU's <c>vcpu_info</c> (what the hypervisor's <c>VCPUOP_register_vcpu_info</c> handler
    /// calls after mapping and checking the guest's frame and offset: the structure must not cross a page).
    /// The hypervisor copies the old contents over, as Xen does, before calling this.
    /// </summary>
    /// <param name="vcpu">The vCPU id.</param>
    /// <param name="vcpuInfo">Host address of the new <c>vcpu_info</c>, 8-byte aligned; valid while the domain lives. Null returns the vCPU to <c>shared_info</c>'s slot on the next <see cref="SetSharedInfo"/>.</param>
    public void SetVcpuInfo(int vcpu, byte* vcpuInfo)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(vcpu);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(vcpu, VcpuCount);
        // Xen 4.18's map_vcpu_info refuses a misaligned vcpu_info: its words are updated atomically.
        if (((nint)vcpuInfo & 7) != 0)
            throw new ArgumentException("vcpu_info must be 8-byte aligned", nameof(vcpuInfo));
        lock (EventLock)
        {
            _vcpus[vcpu].VcpuInfoRegistered = vcpuInfo != null;
            Volatile.Write(ref _vcpus[vcpu].VcpuInfo, (nint)vcpuInfo);
        }
        if (vcpuInfo == null)
            return;
        // register_vcpu_info (xen/common/domain.c): "mark everything as being pending just to make
        // sure nothing gets lost"; the guest sees one spurious upcall.
        if (_compat)
            Interlocked.Exchange(ref *(uint*)(vcpuInfo + TwoLevelAbi.PendingSelOffset32), uint.MaxValue);
        else
            Interlocked.Exchange(ref *(ulong*)(vcpuInfo + TwoLevelAbi.PendingSelOffset64), ulong.MaxValue);
        Volatile.Write(ref *vcpuInfo, (byte)0);
        MarkEventsPending(vcpu);
    }

    internal nint VcpuInfoOf(int vcpu) => Volatile.Read(ref _vcpus[vcpu].VcpuInfo);

    /// <summary>The ports the current ABI can address: Xen's <c>max_evtchns(d)</c>.</summary>
    internal int AbiMaxPorts => Fifo is not null ? FifoEventWord.NrChannels : _compat ? TwoLevelAbi.NrChannels32 : TwoLevelAbi.NrChannels64;

    /// <summary><c>port_is_valid</c> + <c>evtchn_from_port</c>: null for a port never allocated (XSA-221).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Channel? TryGetChannel(uint port)
    {
        if (port >= (uint)Volatile.Read(ref _validPorts))
            return null;
        return _buckets[port / PortsPerBucket]![port % PortsPerBucket];
    }

    /// <summary><c>evtchn_allocate_port</c>; the caller holds the event lock.</summary>
    internal long AllocatePort(uint port)
    {
        // XSA-317: every limit is checked before anything is allocated, so a refusal leaves nothing behind.
        if (port >= (uint)MaxPorts || port >= (uint)AbiMaxPorts)
            return XenErrno.ENOSPC.Negated();
        Channel? chn = TryGetChannel(port);
        if (chn is not null)
            return chn.State != ChannelState.Free || IsBusy(chn) ? XenErrno.EBUSY.Negated() : 0;

        int bucket = (int)(port / PortsPerBucket);
        var channels = new Channel[PortsPerBucket];
        for (int i = 0; i < PortsPerBucket; i++)
            channels[i] = new Channel((uint)(bucket * PortsPerBucket + i), (Ordinal << 20) | (uint)(bucket * PortsPerBucket + i));
        Volatile.Write(ref _buckets[bucket], channels);
        Volatile.Write(ref _validPorts, (bucket + 1) * PortsPerBucket);
        return 0;
    }

    /// <summary><c>get_free_port</c>: the lowest free port; the caller holds the event lock.</summary>
    internal long GetFreePort()
    {
        if (IsDying)
            return XenErrno.EINVAL.Negated();
        for (uint port = 0; port < (uint)MaxPorts; port++)
        {
            long rc = AllocatePort(port);
            if (rc == 0)
                return port;
            if (rc != XenErrno.EBUSY.Negated())
                return rc;
        }
        return XenErrno.ENOSPC.Negated();
    }

    // The port operations (Xen's evtchn_port_ops), dispatched on the ABI in use.

    internal void SetPending(int vcpu, Channel chn)
    {
        if (Fifo is { } fifo)
            fifo.SetPending(vcpu, chn);
        else
            TwoLevelAbi.SetPending(this, vcpu, chn.Port);
    }

    internal void ClearPending(Channel chn)
    {
        if (Fifo is { } fifo)
            fifo.ClearPending(chn);
        else
            TwoLevelAbi.ClearPending(this, chn.Port);
    }

    internal void Unmask(Channel chn)
    {
        if (Fifo is { } fifo)
            fifo.Unmask(chn);
        else
            TwoLevelAbi.Unmask(this, chn.NotifyVcpu, chn.Port);
    }

    internal bool IsPending(Channel chn) => Fifo is { } fifo ? fifo.IsPending(chn) : TwoLevelAbi.IsPending(this, chn.Port);

    internal bool IsMasked(Channel chn) => Fifo is { } fifo ? fifo.IsMasked(chn) : TwoLevelAbi.IsMasked(this, chn.Port);

    internal bool IsBusy(Channel chn) => Fifo is { } fifo && fifo.IsBusy(chn.Port);

    internal void SetFifo(FifoAbi? fifo) => Volatile.Write(ref _fifo, fifo);

    /// <summary>
    /// <c>vcpu_mark_events_pending</c>: set <c>evtchn_upcall_pending</c> and raise the upcall if it
    /// was clear. A vCPU without a <c>vcpu_info</c> (32 and up, before registering one) gets none.
    /// </summary>
    internal void MarkEventsPending(int vcpu)
    {
        byte* info = (byte*)VcpuInfoOf(vcpu);
        if (info == null)
            return;
        byte old = Volatile.Read(ref *info);
        while (true)
        {
            if ((old & 1) != 0)
                return;
            byte seen = Interlocked.CompareExchange(ref *info, (byte)(old | 1), old);
            if (seen == old)
                break;
            old = seen;
        }
        EventChannelMetrics.RecordNotification();
        Upcall.RaiseUpcall(this, vcpu);
    }

    /// <summary>Formats as <c>d&lt;id&gt;</c>, like Xen's <c>%pd</c>.</summary>
    /// <returns>The domain's name.</returns>
    public override string ToString() => $"d{Id}";
}
