using VmmKit.Ept;

namespace VmmKit.GrantTable;

/// <summary>
/// <see cref="IGrantMapper"/> for a domain whose kernel runs in this process: maps grants into the domain's own
/// guest-physical space, in a window of unpopulated guest frames it reserves for foreign pages (as Linux uses
/// ballooned-out pages for gntdev), and issues the same grant-table operations a guest's hypercalls would. Its
/// methods may be called from several threads at once, but not while <see cref="GrantTableHost.DestroyDomain"/> of the
/// domain, and the disposal of its EPT that follows, runs; once they ran it maps nothing and holds no mapping.
/// </summary>
public sealed unsafe class InProcessGrantMapper : IGrantMapper
{
    private readonly GrantTableHost _host;
    private readonly GrantDomain _domain;
    private readonly ulong _firstFrame;

    // Per slot of the window: 0 when free, Reserved while TryMap maps it, else the maptrack handle + 1 of its mapping.
    private readonly uint[] _slots;

    // Per slot: the grant its live mapping is of (domid << 32 | gref), written before the slot's handle. A stale copy of
    // a mapping whose slot and handle came back for another grant names that grant, not this one (gntdev: -ENOENT).
    private readonly ulong[] _slotGrants;
    private const uint Reserved = uint.MaxValue;
    private const ulong GuestFrameLimit = 1UL << 36; // 48-bit guest-physical addresses

    /// <summary>Creates the mapping side of <paramref name="domain"/>.</summary>
    /// <param name="host">The grant tables.</param>
    /// <param name="domain">The mapping domain, one of <paramref name="host"/>'s.</param>
    /// <param name="window">First guest frame of the window; the frames must be unpopulated in the domain's EPT.</param>
    /// <param name="windowFrames">Number of frames in the window (the most simultaneous mappings).</param>
    /// <exception cref="ArgumentException"><paramref name="domain"/> belongs to another host.</exception>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="windowFrames"/> is not positive, or the window holds guest frame 0 or reaches past the 48-bit
    /// guest-physical space (2^36 frames): a mapping there could never be unmapped.
    /// </exception>
    public InProcessGrantMapper(GrantTableHost host, GrantDomain domain, GuestFrameNumber window, int windowFrames)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(domain);
        host.CheckCaller(domain); // GetPage reads the domain's EPT in the host's memory
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(windowFrames);

        // unmap_common undoes a host mapping only for a non-zero host_addr (0 asks for nothing), and a 4-level EPT ends
        // at 2^36 frames: a slot at gfn 0, or one whose address does not fit, could be mapped but never unmapped.
        if (window.Value == 0 || window.Value > GuestFrameLimit - (ulong)windowFrames)
        {
            throw new ArgumentOutOfRangeException(nameof(window), window, "The window must lie within guest frames 1 to 2^36 - 1.");
        }

        _host = host;
        _domain = domain;
        _firstFrame = window.Value;
        _slots = new uint[windowFrames];
        _slotGrants = new ulong[windowFrames];
    }

    /// <inheritdoc/>
    public GrantStatus TryMap(ushort domainId, uint grantRef, bool readOnly, out GrantMapping mapping)
    {
        mapping = default;
        int slot;
        lock (_slots)
        {
            slot = Array.IndexOf(_slots, 0u);
            if (slot < 0)
            {
                return GrantStatus.NoSpace;
            }

            _slots[slot] = Reserved;
        }

        ulong address = (_firstFrame + (ulong)slot) << Page.PageShift;
        var op = new GnttabMapGrantRef
        {
            HostAddr = address,
            Flags = (uint)(GrantMapFlags.HostMap | (readOnly ? GrantMapFlags.ReadOnly : 0)),
            Ref = grantRef,
            Dom = domainId,
        };
        _host.MapGrantRef(_domain, ref op);
        lock (_slots)
        {
            _slotGrants[slot] = GrantKey(domainId, grantRef);
            Volatile.Write(ref _slots[slot], op.Status == (short)GrantStatus.Okay ? op.Handle + 1 : 0);
        }

        if (op.Status != (short)GrantStatus.Okay)
        {
            return (GrantStatus)op.Status;
        }

        mapping = new GrantMapping(domainId, grantRef, op.Handle, address, readOnly);
        return GrantStatus.Okay;
    }

    /// <inheritdoc/>
    public Span<byte> GetPage(in GrantMapping mapping)
    {
        MachineFrameNumber frame = LiveFrame(mapping, out EptAccess access);
        if ((access & EptAccess.Write) == 0)
        {
            // The EPT entry the host made says read-only, whatever the caller's copy of the mapping says.
            throw new InvalidOperationException("The grant is mapped read-only: use GetReadOnlyPage.");
        }

        return _host.Memory.GetFrame(frame);
    }

    /// <inheritdoc/>
    public ReadOnlySpan<byte> GetReadOnlyPage(in GrantMapping mapping) => _host.Memory.GetFrame(LiveFrame(mapping, out _));

    // The frame of a live mapping of this mapper, with the access its EPT entry gives: another mapper's address (or
    // another domain's) would otherwise name whatever page this domain has there.
    private MachineFrameNumber LiveFrame(in GrantMapping mapping, out EptAccess access)
    {
        if (!IsMine(mapping, out _) ||
            !_domain.Ept.TryLookup(new GuestFrameNumber(mapping.Address >> Page.PageShift), out MachineFrameNumber frame, out access))
        {
            throw new ArgumentException("The mapping is not a live mapping of this mapper.", nameof(mapping));
        }

        return frame;
    }

    /// <inheritdoc/>
    public GrantStatus Unmap(in GrantMapping mapping)
    {
        // gntdev_ioctl_unmap_grant_ref: only a mapping of this file is unmapped (-ENOENT otherwise).
        if (!IsMine(mapping, out int slot))
        {
            return GrantStatus.GeneralError;
        }

        var op = new GnttabUnmapGrantRef { HostAddr = mapping.Address, Handle = mapping.Handle };
        _host.UnmapGrantRef(_domain, ref op);
        if (op.Status == (short)GrantStatus.Okay)
        {
            lock (_slots)
            {
                _slots[slot] = 0;
            }
        }

        return (GrantStatus)op.Status;
    }

    // The mapping's address names a slot of this window, page-aligned, whose live mapping has the mapping's handle and
    // grant. A destroyed domain has none (DestroyDomain released them all, and its EPT may be disposed since).
    private bool IsMine(in GrantMapping mapping, out int slot)
    {
        ulong index = (mapping.Address >> Page.PageShift) - _firstFrame; // an address below the window wraps past it
        slot = (int)index;
        return !_domain.IsDestroyed &&
            index < (ulong)_slots.Length &&
            (mapping.Address & Page.PageOffsetMask) == 0 &&
            mapping.Handle < Reserved - 1 &&
            Volatile.Read(ref _slots[slot]) == mapping.Handle + 1 &&
            Volatile.Read(ref _slotGrants[slot]) == GrantKey(mapping.DomainId, mapping.GrantRef);
    }

    private static ulong GrantKey(ushort domainId, uint grantRef) => ((ulong)domainId << 32) | grantRef;

    /// <inheritdoc/>
    public void Copy(Span<GnttabCopy> operations) => _host.Copy(_domain, operations);
}
