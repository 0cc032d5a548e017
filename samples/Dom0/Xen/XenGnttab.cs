using System.Runtime.CompilerServices;
using VmmKit.GrantTable;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Xen;

/// <summary>
/// Foreign grants for a Dom0 backend over the hypervisor channel: what Linux's /dev/xen/gntdev gives a process
/// (xen/gntdev.h) and libxengnttab wraps. A map is GNTTABOP_map_grant_ref with GNTMAP_host_map as domain 0, at a
/// guest-physical slot of domain 0 above its RAM (so its own memory is never displaced); the reply's
/// <c>dev_bus_addr</c> is the frame's machine address, i.e. its offset in the shared machine-memory file, where
/// <see cref="GetPage"/> reads and writes it in place. <see cref="GrantMapping.Address"/> is that machine address.
/// </summary>
public sealed class XenGnttab : IGrantMapper
{
    /// <summary>The first guest-physical frame of domain 0 used for grant mappings (4 GiB).</summary>
    public const ulong FirstSlot = 0x100000;

    private readonly Privcmd _privcmd;
    private readonly Dictionary<uint, (ulong Slot, ulong Address, bool ReadOnly)> _liveByHandle = [];
    private readonly Stack<ulong> _freeSlots = new();
    private readonly object _lock = new();
    private ulong _nextSlot = FirstSlot;

    /// <summary>Opens a handle (<c>xengnttab_open</c>).</summary>
    public XenGnttab(Privcmd privcmd) => _privcmd = privcmd;

    /// <inheritdoc/>
    public GrantStatus TryMap(ushort domainId, uint grantRef, bool readOnly, out GrantMapping mapping)
    {
        // Every slot is free or this handle's: the hypervisor unmaps a previous Dom0 process's grants when it goes, as
        // Linux's gntdev does when its file is closed (docs/articles/dom0-abi.md, "Reattaching").
        ulong slot;
        lock (_lock)
            slot = _freeSlots.Count == 0 ? _nextSlot++ : _freeSlots.Pop();
        GrantStatus s = MapAt(slot, domainId, grantRef, readOnly, out mapping);
        if (s != GrantStatus.Okay)
        {
            lock (_lock)
                _freeSlots.Push(slot);
        }

        return s;
    }

    private GrantStatus MapAt(ulong slot, ushort domainId, uint grantRef, bool readOnly, out GrantMapping mapping)
    {
        using var b = _privcmd.Buffers.Rent(Unsafe.SizeOf<GnttabMapGrantRef>());
        b.As<GnttabMapGrantRef>() = new GnttabMapGrantRef
        {
            HostAddr = slot << 12, Ref = grantRef, Dom = domainId,
            Flags = (uint)(GrantMapFlags.HostMap | (readOnly ? GrantMapFlags.ReadOnly : 0)),
        };
        long rc = _privcmd.Hypercall(HypercallNumber.GrantTableOp, (ulong)GrantTableOp.MapGrantRef, b.Address, 1);
        var op = b.As<GnttabMapGrantRef>();
        if (rc < 0 || op.Status != (short)GrantStatus.Okay)
        {
            mapping = default;
            return rc < 0 ? GrantStatus.GeneralError : (GrantStatus)op.Status;
        }

        lock (_lock)
            _liveByHandle[op.Handle] = (slot, op.DevBusAddr, readOnly);
        mapping = new GrantMapping(domainId, grantRef, op.Handle, op.DevBusAddr, readOnly);
        return GrantStatus.Okay;
    }

    /// <inheritdoc/>
    public Span<byte> GetPage(in GrantMapping mapping)
    {
        // As the record made at the map says, whatever the caller's copy of the mapping says (gntdev: PROT_READ only).
        ulong address = LiveAddress(mapping, out bool readOnly);
        if (readOnly)
            throw new InvalidOperationException("The grant is mapped read-only: use GetReadOnlyPage.");
        return _privcmd.Channel.Frame(address >> 12);
    }

    /// <inheritdoc/>
    public ReadOnlySpan<byte> GetReadOnlyPage(in GrantMapping mapping) => _privcmd.Channel.Frame(LiveAddress(mapping, out _) >> 12);

    // Only a live mapping of this handle: a stale or foreign one would name whatever frame is at that address now.
    private ulong LiveAddress(in GrantMapping mapping, out bool readOnly)
    {
        lock (_lock)
        {
            if (!_liveByHandle.TryGetValue(mapping.Handle, out var live) || live.Address != mapping.Address)
                throw new ArgumentException("The mapping is not a live mapping of this handle.", nameof(mapping));
            readOnly = live.ReadOnly;
            return live.Address;
        }
    }

    /// <inheritdoc/>
    public GrantStatus Unmap(in GrantMapping mapping)
    {
        // The record goes before the hypercall: once the hypervisor has unmapped it, it hands the same handle to the
        // next map (its maptrack free list), possibly another thread's, whose record this must not remove afterwards.
        (ulong Slot, ulong Address, bool ReadOnly) live;
        lock (_lock)
        {
            if (!_liveByHandle.TryGetValue(mapping.Handle, out live) || live.Address != mapping.Address)
                return GrantStatus.BadHandle;
            _liveByHandle.Remove(mapping.Handle);
        }

        ulong slot = live.Slot;
        using var b = _privcmd.Buffers.Rent(Unsafe.SizeOf<GnttabUnmapGrantRef>());
        b.As<GnttabUnmapGrantRef>() = new GnttabUnmapGrantRef { HostAddr = slot << 12, Handle = mapping.Handle };
        long rc = _privcmd.Hypercall(HypercallNumber.GrantTableOp, (ulong)GrantTableOp.UnmapGrantRef, b.Address, 1);
        var status = rc < 0 ? GrantStatus.GeneralError : (GrantStatus)b.As<GnttabUnmapGrantRef>().Status;
        lock (_lock)
        {
            if (status == GrantStatus.Okay)
                _freeSlots.Push(slot);
            else
                _liveByHandle[mapping.Handle] = live;   // still mapped, so the handle is still this mapping's
        }

        return status;
    }

    /// <inheritdoc/>
    public void Copy(Span<GnttabCopy> operations)
    {
        int size = Unsafe.SizeOf<GnttabCopy>();
        using var b = _privcmd.Buffers.Rent(size * operations.Length);
        for (int i = 0; i < operations.Length; i++)
            b.As<GnttabCopy>(i * size) = operations[i];
        long rc = _privcmd.Hypercall(HypercallNumber.GrantTableOp, (ulong)GrantTableOp.Copy, b.Address, (ulong)operations.Length);
        for (int i = 0; i < operations.Length; i++)
        {
            operations[i] = b.As<GnttabCopy>(i * size);
            if (rc < 0)
                operations[i].Status = (short)GrantStatus.GeneralError;
        }
    }
}
