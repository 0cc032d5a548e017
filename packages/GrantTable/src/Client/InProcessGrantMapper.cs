using VmmKit.Ept;

namespace VmmKit.GrantTable;

/// <summary>
/// <see cref="IGrantMapper"/> for a domain whose kernel runs in this process: maps grants into the domain's own
/// guest-physical space, in a window of unpopulated guest frames it reserves for foreign pages (as Linux uses
/// ballooned-out pages for gntdev), and issues the same grant-table operations a guest's hypercalls would.
/// </summary>
public sealed unsafe class InProcessGrantMapper : IGrantMapper
{
    private readonly GrantTableHost _host;
    private readonly GrantDomain _domain;
    private readonly ulong _firstFrame;
    private readonly bool[] _used;

    /// <summary>Creates the mapping side of <paramref name="domain"/>.</summary>
    /// <param name="host">The grant tables.</param>
    /// <param name="domain">The mapping domain.</param>
    /// <param name="window">First guest frame of the window; the frames must be unpopulated in the domain's EPT.</param>
    /// <param name="windowFrames">Number of frames in the window (the most simultaneous mappings).</param>
    public InProcessGrantMapper(GrantTableHost host, GrantDomain domain, GuestFrameNumber window, int windowFrames)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(windowFrames);
        _host = host;
        _domain = domain;
        _firstFrame = window.Value;
        _used = new bool[windowFrames];
    }

    /// <inheritdoc/>
    public GrantStatus TryMap(ushort domainId, uint grantRef, bool readOnly, out GrantMapping mapping)
    {
        mapping = default;
        int slot;
        lock (_used)
        {
            slot = Array.IndexOf(_used, false);
            if (slot < 0)
            {
                return GrantStatus.NoSpace;
            }

            _used[slot] = true;
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
        if (op.Status != (short)GrantStatus.Okay)
        {
            lock (_used)
            {
                _used[slot] = false;
            }

            return (GrantStatus)op.Status;
        }

        mapping = new GrantMapping(domainId, grantRef, op.Handle, address, readOnly);
        return GrantStatus.Okay;
    }

    /// <inheritdoc/>
    public Span<byte> GetPage(in GrantMapping mapping)
    {
        if (!_domain.Ept.TryLookup(new GuestFrameNumber(mapping.Address >> Page.PageShift), out MachineFrameNumber frame, out _))
        {
            throw new ArgumentException("The mapping is not live.", nameof(mapping));
        }

        return _host.Memory.GetFrame(frame);
    }

    /// <inheritdoc/>
    public GrantStatus Unmap(in GrantMapping mapping)
    {
        // gntdev_ioctl_unmap_grant_ref: only a mapping of this file is unmapped (-ENOENT otherwise).
        ulong slot = (mapping.Address >> Page.PageShift) - _firstFrame; // an address below the window wraps past it
        lock (_used)
        {
            if (slot >= (ulong)_used.Length || !_used[slot])
            {
                return GrantStatus.GeneralError;
            }
        }

        var op = new GnttabUnmapGrantRef { HostAddr = mapping.Address, Handle = mapping.Handle };
        _host.UnmapGrantRef(_domain, ref op);
        if (op.Status == (short)GrantStatus.Okay)
        {
            lock (_used)
            {
                _used[slot] = false;
            }
        }

        return (GrantStatus)op.Status;
    }

    /// <inheritdoc/>
    public void Copy(Span<GnttabCopy> operations) => _host.Copy(_domain, operations);
}
