using VmmKit.Ept;
using VmmKit.EventChannel;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A domain built by the toolstack (XEN_DOMCTL_createdomain, then populate_physmap, setvcpucontext and unpause) rather
/// than by <see cref="Machine.TryCreateDomain"/>, and domain 0 itself: what src/Host needs of a domain.
/// </summary>
internal sealed partial class Domain
{
    /// <summary>
    /// Creates an empty domain as XEN_DOMCTL_createdomain does: its shared_info page, event channels and grant table,
    /// no RAM, no vCPU, paused once (Xen creates domains paused; the toolstack unpauses a built one).
    /// </summary>
    /// <param name="machine">The machine.</param>
    /// <param name="id">The domid.</param>
    /// <param name="name">A name for diagnostics (XenStore holds the real one).</param>
    /// <param name="maxVcpus">xen_domctl_createdomain.max_vcpus.</param>
    /// <param name="privileged">True for domain 0 (Xen's <c>is_control_domain</c>).</param>
    /// <param name="upcall">How the domain's events are raised; null for a guest's vCPUs (the machine's).</param>
    /// <param name="grantLimits">
    /// The grant-table limits createdomain's fields gave (<see cref="VmmKit.GrantTable.GrantTableHost.TryCreateLimits"/>);
    /// null for the host's (<see cref="VmmKit.GrantTable.GrantTableHost.HostLimits"/>), as Xen gives domain 0.
    /// </param>
    /// <exception cref="VmmKit.Ept.MachineMemoryExhaustedException">No frame for the EPT root, shared_info or the first grant-table frame; nothing of the domain is left.</exception>
    internal Domain(Machine machine, ushort id, string name, uint maxVcpus, bool privileged, IEventChannelUpcall? upcall,
        VmmKit.GrantTable.GrantTableLimits? grantLimits = null)
        : this(machine, id, new DomainConfig(name, [], 0, ConsoleLine: privileged
            ? line => machine.Log($"(d{id}) {line.TrimEnd('\n')}")      // Xen writes the hardware domain's output as it is
            : new GuestConsoleLog(machine, id).Line))
    {
        IsPrivileged = privileged;
        MaxVcpus = maxVcpus;
        if (!privileged)
            machine.ChooseScheduling(this);
        PauseCount = privileged ? 0 : 1;
        try
        {
            SharedInfoFrame = machine.Memory.AllocateFrame(Owner);
            _frames.Add((SharedInfoFrame, 1));
            Wallclock.Write(machine.Memory.GetFrame(SharedInfoFrame), Has32BitSharedInfo, WallclockBaseNanoseconds);
            Events = machine.Events.CreateDomain(new EventChannelDomainOptions
            {
                Id = id, VcpuCount = (int)Math.Max(1, maxVcpus), Upcall = upcall ?? machine.Upcall, IsControlDomain = privileged,
            });
            unsafe
            {
                Events.SetSharedInfo(machine.Memory.GetFramePointer(SharedInfoFrame), Has32BitSharedInfo);
            }

            Grants = machine.Grants.CreateDomain(id, Ept, grantLimits);
        }
        catch
        {
            // domain_create's fail path: what was made goes (the EPT root, shared_info, the event channels), so no frame
            // stays charged to the id and no package keeps the id registered (XEN_DOMCTL_createdomain answers -ENOMEM).
            Dispose();
            throw;
        }
    }

    /// <summary>Xen's <c>is_control_domain</c>: domain 0, which the dummy XSM policy lets use domctl and sysctl.</summary>
    public bool IsPrivileged { get; }

    /// <summary>xen_domctl_createdomain.max_vcpus.</summary>
    public uint MaxVcpus { get; }

    /// <summary>Xen's <c>d->pause_count</c> (XEN_DOMCTL_pausedomain/unpausedomain): a paused domain's vCPUs do not run.</summary>
    public int PauseCount { get; set; }

    /// <summary>Xen's <c>d->max_pages</c> (XEN_DOMCTL_max_mem), in pages.</summary>
    public ulong MaxPages { get; private set; } = ulong.MaxValue;

    /// <summary>xen_domctl_createdomain.handle: the toolstack's UUID for the domain.</summary>
    public Guid Handle { get; set; }

    /// <summary>Xen's <c>d->is_dying</c>: XEN_DOMCTL_destroydomain ran.</summary>
    public bool IsDying { get; set; }

    /// <summary>Host time spent running the domain's vCPUs (getdomaininfo's cpu_time).</summary>
    public TimeSpan CpuTime { get; set; }

    /// <summary>Pages populated by the toolstack (Xen's <c>d->tot_pages</c> for RAM).</summary>
    public ulong PopulatedPages { get; private set; }

    // RAM frames removed from the physmap while another mapping still held them: still the domain's until freed.
    private readonly List<MachineFrameNumber> _removedHeld = [];

    /// <summary>
    /// RAM pages charged against max_mem: those populated, plus removed ones a grant or foreign mapping still holds
    /// (Xen's <c>tot_pages</c> drops only when <c>free_domheap_pages</c> frees a page at its last reference).
    /// </summary>
    public ulong ChargedPages
    {
        get
        {
            // A frame whose deferred free completed is no longer the domain's (it may be again later, as a new page,
            // but then it is not waiting to be freed).
            for (int i = _removedHeld.Count - 1; i >= 0; i--)
            {
                var f = _removedHeld[i];
                if (!Machine.Frames.IsFreePending(f) || !Machine.Memory.TryGetOwner(f, out var owner) || owner != Owner)
                    _removedHeld.RemoveAt(i);
            }

            return PopulatedPages + (ulong)_removedHeld.Count;
        }
    }

    /// <summary>
    /// Whether <paramref name="frame"/> is one of the domain's grant-table frames, shared or status: asked of
    /// VmmKit.GrantTable under its lock, since another vCPU's GNTTABOP_set_version may free the status frames meanwhile.
    /// </summary>
    public bool IsGrantTableFrame(MachineFrameNumber frame) =>
        Grants is { } grants && Machine.Grants.IsTableFrame(grants, frame);

    /// <summary>A removed RAM frame whose free waits for another mapping: it counts in <see cref="ChargedPages"/> until then.</summary>
    public void ChargeUntilFreed(MachineFrameNumber frame) => _removedHeld.Add(frame);

    /// <summary>XEN_DOMCTL_max_mem: caps the domain's RAM and the machine frames charged to it (RAM plus its tables).</summary>
    public void SetMaxPages(ulong pages)
    {
        MaxPages = pages;
        ulong overhead = 1 + (pages / 256) + 16 + 8 + (ulong)Grants.SharedFrameCount + (ulong)Grants.StatusFrameCount;
        Machine.Memory.SetLimit(Owner, Math.Max(pages + overhead, Machine.Memory.FramesOwnedBy(Owner)));
    }

    /// <summary>
    /// XENMEM_populate_physmap for one 4 KiB extent: a fresh, zeroed frame at <paramref name="gfn"/> (Xen's
    /// <c>populate_physmap</c>). 0, -EBUSY when the gfn is already populated, -ENOMEM past max_mem or machine memory.
    /// </summary>
    public long Populate(ulong gfn)
    {
        using (PhysmapLock.Write())   // the slot looked at and filled, and the RAM records, in one step
        {
            if (Ept.TryLookup(new GuestFrameNumber(gfn), out _, out _))
                return XenErrno.EBUSY.Negated();
            if (ChargedPages >= MaxPages || !Machine.Memory.TryAllocateFrame(Owner, out var frame))
                return XenErrno.ENOMEM.Negated();
            Machine.Memory.GetFrame(frame).Clear();
            try
            {
                Ept.Map(new GuestPhysicalAddress(gfn << Page.PageShift), frame, 1, EptAccess.ReadWriteExecute);
            }
            catch (MachineMemoryExhaustedException)
            {
                Machine.Memory.FreeFrame(frame);
                return XenErrno.ENOMEM.Negated();
            }

            _frames.Add((frame, 1));
            PopulatedPages++;
            MemoryBytes = Math.Max(MemoryBytes, (gfn + 1) << Page.PageShift);
            return 0;
        }
    }

    /// <summary>
    /// Domain 0's RAM: <paramref name="pages"/> machine-contiguous frames at guest-physical 0, so that Dom0 finds its own
    /// memory at one offset of the machine-memory file. Returns the first frame.
    /// </summary>
    public MachineFrameNumber PopulateContiguous(ulong pages)
    {
        var first = Machine.Memory.AllocateContiguous(Owner, pages);
        _frames.Add((first, pages));
        Ept.Map(new GuestPhysicalAddress(0), first, pages, EptAccess.ReadWriteExecute);
        PopulatedPages += pages;
        MemoryBytes = pages << Page.PageShift;
        return first;
    }

    /// <summary>
    /// XEN_DOMCTL_setvcpucontext for vCPU 0 of a PVH domain: the vCPU starts in the PVH entry state (32-bit protected
    /// mode, paging off, flat segments; xen/include/public/arch-x86/hvm/start_info.h) at <paramref name="entry"/> with
    /// EBX = <paramref name="startInfo"/>. -EEXIST when the vCPU exists (it is set once, before the first unpause).
    /// </summary>
    public long InitialiseBootVcpu(uint entry, uint startInfo)
    {
        if (_vcpus.Count != 0)
            return XenErrno.EEXIST.Negated();
        var vcpu = new VirtualCpu(this, 0, Machine.CreateProcessor());
        Machine.ProgramPvhVmcs(vcpu, entry);
        Devices.VcpuApic.ProgramVmcs(vcpu);   // the local APIC's CR8 exiting, as Domain.TryBuild
        vcpu.Registers = default;
        vcpu.Registers.Rbx = startInfo;
        _vcpus.Add(vcpu);
        AddSecondaryVcpus((int)Math.Min(MaxVcpus, MaxGuestVcpus));   // down, waiting for INIT/SIPI (Core/VcpuLifecycle.cs)
        UpdateBlockedState();
        return 0;
    }

    /// <summary>XEN_DOMCTL_getdomaininfo's shutdown flags and code: the state as Xen's <c>getdomaininfo</c> reports it.</summary>
    public bool IsShutdown => State is DomainState.Shutdown or DomainState.Crashed;

    /// <summary>The SHUTDOWN_* code (crash for a domain the hypervisor crashed).</summary>
    public uint ShutdownCode => State == DomainState.Crashed ? (uint)ShutdownReason.Crash : (uint)ShutdownReason;

    /// <summary>
    /// SCHEDOP_remote_shutdown: the toolstack stops the domain with <paramref name="reason"/> (Xen's <c>domain_shutdown</c>).
    /// </summary>
    public void ShutdownBy(ShutdownReason reason) => Shutdown(reason);

    /// <summary>
    /// Xen's <c>guest_remove_page</c> accounting: RAM frame <paramref name="frame"/> (already out of the EPT) stops being
    /// the domain's to free at its death and leaves tot_pages; the caller frees it (through the frame references, which
    /// keep it while a grant or foreign mapping holds it). False, and nothing changes, for a frame the domain did not
    /// allocate as RAM, and for domain 0, whose process reaches its RAM through the machine-memory file at a fixed
    /// offset: its frames stay charged until it dies.
    /// </summary>
    public bool TryReleaseRamFrame(MachineFrameNumber frame)
    {
        if (IsPrivileged || frame == SharedInfoFrame)
            return false;
        for (int i = 0; i < _frames.Count; i++)
        {
            var (first, count) = _frames[i];
            if (frame.Value < first.Value || frame.Value - first.Value >= count)
                continue;
            ulong at = frame.Value - first.Value;
            _frames.RemoveAt(i);
            if (at > 0)
                _frames.Add((first, at));
            if (at + 1 < count)
                _frames.Add((new MachineFrameNumber(frame.Value + 1), count - at - 1));
            if (PopulatedPages > 0)
                PopulatedPages--;
            return true;
        }

        return false;
    }
}
