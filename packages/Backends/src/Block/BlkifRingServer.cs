using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Backends.Rings;
using VmmKit.GrantTable;

namespace VmmKit.Backends.Block;

/// <summary>
/// The backend end of one connected blkif ring (xen/io/blkif.h, xen/io/ring.h): takes requests, moves the data between
/// the frontend's granted pages and an <see cref="IBlockStorage"/> by grant mapping (or, given an
/// <see cref="IBackendBuffer"/>, by grant copy: one batched <c>GNTTABOP_copy</c> per request), and writes responses, as
/// Linux's xen-blkback does. The frontend is untrusted: a request is copied out of the shared ring before it is checked, and
/// every bad request (segment count, sector range, first/last sector, a grant that does not map, an unknown operation)
/// gets an error response; a frontend that claims more requests than the ring holds stops the ring (xen-blkback:
/// "Halting ring processing"). Storage failures become <see cref="BlkifStatus.Error"/>. Not thread-safe: one caller at a time.
/// </summary>
public sealed class BlkifRingServer : IDisposable
{
    private readonly IGrantMapper _mapper;
    private readonly ushort _frontend;
    private readonly GrantedPages _ring;
    private readonly IBlockStorage _storage;
    private readonly BlkifProtocol _protocol;
    private readonly int _requestSize, _responseSize, _entrySize;
    private readonly uint _size;
    private readonly BlkifRequestSegment[] _segments;
    private readonly int _maxIndirectSegments;
    private readonly IBackendBuffer? _buffer;
    private readonly GnttabCopy[] _copies;
    private readonly GrantMapping[] _maps;
    private uint _reqCons, _rspProdPvt;
    private volatile bool _stopping;

    /// <summary>Creates the server over a mapped ring.</summary>
    /// <param name="mapper">
    /// Maps the frontend's data and indirect pages; by grant map, all the segments of a request are mapped at once.
    /// </param>
    /// <param name="frontendDomain">The frontend's domain.</param>
    /// <param name="ring">The ring's pages (owned by the server from now on).</param>
    /// <param name="protocol">The frontend's ring layout.</param>
    /// <param name="storage">The disk.</param>
    /// <param name="maxIndirectSegments">Segments allowed in an indirect request (0: indirect requests are refused).</param>
    /// <param name="copyBuffer">Local pages to move data by grant copy, at least as many as a request's segments; null: grant map.</param>
    public BlkifRingServer(IGrantMapper mapper, ushort frontendDomain, GrantedPages ring, BlkifProtocol protocol, IBlockStorage storage, int maxIndirectSegments,
        IBackendBuffer? copyBuffer = null)
    {
        ArgumentNullException.ThrowIfNull(mapper);
        ArgumentNullException.ThrowIfNull(ring);
        ArgumentNullException.ThrowIfNull(storage);
        ArgumentOutOfRangeException.ThrowIfNegative(maxIndirectSegments);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxIndirectSegments, BlkifLimits.MaxIndirectPagesPerRequest * BlkifLimits.SegmentsPerIndirectPage);
        _mapper = mapper;
        _frontend = frontendDomain;
        _ring = ring;
        _protocol = protocol;
        _storage = storage;
        _maxIndirectSegments = maxIndirectSegments;
        (_requestSize, _responseSize) = protocol == BlkifProtocol.X86_32
            ? (Unsafe.SizeOf<BlkifX86_32Request>(), Unsafe.SizeOf<BlkifX86_32Response>())
            : (Unsafe.SizeOf<BlkifRequest>(), Unsafe.SizeOf<BlkifResponse>());
        _entrySize = Math.Max(_requestSize, _responseSize);
        _size = SharedRing.Size(ring.Count, _entrySize);
        _segments = new BlkifRequestSegment[Math.Max(BlkifLimits.MaxSegmentsPerRequest, maxIndirectSegments)];
        if (copyBuffer is not null && copyBuffer.PageCount < _segments.Length)
            throw new ArgumentException($"The copy buffer needs at least {_segments.Length} pages.", nameof(copyBuffer));
        _buffer = copyBuffer;
        _copies = new GnttabCopy[copyBuffer is null ? 0 : _segments.Length];
        _maps = new GrantMapping[copyBuffer is null ? _segments.Length : 0];
        // The frontend initialised the ring (SHARED_RING_INIT); the private indexes start from what it published.
        _reqCons = _rspProdPvt = Volatile.Read(ref ring.Index(SharedRing.RspProdOffset));
    }

    /// <summary>Entries in the ring (<c>RING_SIZE</c>).</summary>
    public uint RingSize => _size;

    /// <summary>True once the frontend corrupted the ring indexes; no more requests are taken.</summary>
    public bool IsHalted { get; private set; }

    /// <summary>Requests answered so far.</summary>
    public long RequestsCompleted { get; private set; }

    /// <summary>Requests answered with an error status so far.</summary>
    public long RequestsFailed { get; private set; }

    // RING_REQUEST_PROD_OVERFLOW (xen/io/ring.h): req_prod claims more requests than the ring holds.
    internal bool RequestsOverflow() => Volatile.Read(ref _ring.Index(SharedRing.ReqProdOffset)) - _rspProdPvt > _size;

    /// <summary>
    /// Takes every request the frontend published, answers each, and re-arms <c>req_event</c>
    /// (<c>RING_FINAL_CHECK_FOR_REQUESTS</c>). Returns true when the frontend must be notified
    /// (<c>RING_PUSH_RESPONSES_AND_CHECK_NOTIFY</c>).
    /// </summary>
    /// <returns>Whether to notify the frontend's event channel.</returns>
    public bool Process()
    {
        bool notify = false;
        while (!IsHalted && !_stopping)
        {
            uint rp = Volatile.Read(ref _ring.Index(SharedRing.ReqProdOffset));
            Interlocked.MemoryBarrier(); // rmb: read requests only after req_prod
            if (rp - _rspProdPvt > _size) // RING_REQUEST_PROD_OVERFLOW
            {
                IsHalted = true; // xen-blkback: "Frontend provided bogus ring requests ... Halting ring processing"
                break;
            }

            // A disconnect ends the loop between requests, however many the frontend keeps queueing (xen-blkback's
            // __do_block_io_op checks kthread_should_stop() before each one).
            while (_reqCons != rp && !_stopping)
            {
                Respond(Handle(_reqCons & (_size - 1)));
                _reqCons++;
            }

            notify |= PushResponses();
            // RING_FINAL_CHECK_FOR_REQUESTS: ask for an event at the next request, then look once more.
            Volatile.Write(ref _ring.Index(SharedRing.ReqEventOffset), _reqCons + 1);
            Interlocked.MemoryBarrier();
            if (Volatile.Read(ref _ring.Index(SharedRing.ReqProdOffset)) == _reqCons)
                break;
        }

        return notify;
    }

    private readonly record struct Answer(ulong Id, byte Operation, BlkifStatus Status);

    private Answer Handle(uint slot)
    {
        int offset = SharedRing.EntriesOffset + (int)(slot * (uint)_entrySize);
        // Copy the request out of the shared page before looking at it (the frontend may rewrite it meanwhile).
        Span<byte> raw = stackalloc byte[Unsafe.SizeOf<BlkifRequest>()];
        raw.Clear();
        _ring.Read(offset, raw[.._requestSize]);
        byte operation = raw[0];
        ulong id;
        ulong sector;
        int count;
        BlkifOperation dataOp;
        bool flush = false;
        if (operation == (byte)BlkifOperation.Indirect)
        {
            ushort nr;
            byte indirectOp;
            BlkifIndirectGrefs grefs;
            if (_protocol == BlkifProtocol.X86_32)
            {
                var r = MemoryMarshal.Read<BlkifX86_32RequestIndirect>(raw);
                (id, sector, nr, indirectOp, grefs) = (r.Id, r.SectorNumber, r.NrSegments, r.IndirectOp, r.IndirectGrefs);
            }
            else
            {
                var r = MemoryMarshal.Read<BlkifRequestIndirect>(raw);
                (id, sector, nr, indirectOp, grefs) = (r.Id, r.SectorNumber, r.NrSegments, r.IndirectOp, r.IndirectGrefs);
            }

            // The answer carries indirect_op, never BLKIF_OP_INDIRECT (xen-blkback's dispatch_rw_block_io answers with
            // req_operation, on fail_response too): xen-blkfront's blkif_interrupt disables the disk otherwise.
            operation = indirectOp;
            if (_maxIndirectSegments == 0)
            {
                return new Answer(id, operation, BlkifStatus.NotSupported);
            }

            if (indirectOp is not ((byte)BlkifOperation.Read or (byte)BlkifOperation.Write) || nr == 0 || nr > _maxIndirectSegments
                || !TryReadIndirectSegments(grefs, nr))
            {
                return new Answer(id, operation, BlkifStatus.Error);
            }

            (dataOp, count) = ((BlkifOperation)indirectOp, nr);
        }
        else
        {
            byte nr;
            if (_protocol == BlkifProtocol.X86_32)
            {
                var r = MemoryMarshal.Read<BlkifX86_32Request>(raw);
                (id, sector, nr) = (r.Id, r.SectorNumber, r.NrSegments);
                ((ReadOnlySpan<BlkifRequestSegment>)r.Seg)[..Math.Min((int)nr, BlkifLimits.MaxSegmentsPerRequest)].CopyTo(_segments);
            }
            else
            {
                var r = MemoryMarshal.Read<BlkifRequest>(raw);
                (id, sector, nr) = (r.Id, r.SectorNumber, r.NrSegments);
                ((ReadOnlySpan<BlkifRequestSegment>)r.Seg)[..Math.Min((int)nr, BlkifLimits.MaxSegmentsPerRequest)].CopyTo(_segments);
            }

            switch ((BlkifOperation)operation)
            {
                case BlkifOperation.Read or BlkifOperation.Write:
                    if (nr == 0 || nr > BlkifLimits.MaxSegmentsPerRequest)
                        return new Answer(id, operation, BlkifStatus.Error);
                    (dataOp, count) = ((BlkifOperation)operation, nr);
                    break;
                case BlkifOperation.FlushDiskCache:
                    // feature-flush-cache: completed writes reach the disk (fsync). xen-blkback's dispatch_rw_block_io
                    // takes it as a write with REQ_PREFLUSH: up to 11 segments, checked and written as a write's.
                    if (nr > BlkifLimits.MaxSegmentsPerRequest)
                        return new Answer(id, operation, BlkifStatus.Error);
                    (dataOp, count, flush) = (BlkifOperation.Write, nr, true);
                    break;
                case BlkifOperation.Discard:
                    // Not advertised (no feature-discard). xen-blkback's dispatch_discard_io checks it as a write
                    // (xen_vbd_translate: read-only vbd, range) before the device refuses it with EOPNOTSUPP.
                    ulong sectors = MemoryMarshal.Read<ulong>(raw[(_protocol == BlkifProtocol.X86_32 ? 20 : 24)..]);
                    return new Answer(id, operation, IsWritableRange(sector, sectors) ? BlkifStatus.NotSupported : BlkifStatus.Error);
                default:
                    // Barriers are not advertised; xen-blkback's dispatch_other_io answers unknown operations EOPNOTSUPP.
                    return new Answer(id, operation, BlkifStatus.NotSupported);
            }
        }

        ReadOnlySpan<BlkifRequestSegment> segments = _segments.AsSpan(0, count);
        BlkifStatus status = Check(dataOp == BlkifOperation.Write, sector, segments);
        if (status == BlkifStatus.Okay && flush)
        {
            // Only a flush that passed the checks syncs the disk; without segments it is all the request does.
            status = TryStorage(static s => s.Flush());
            if (count == 0)
                return new Answer(id, operation, status);
        }

        return new Answer(id, operation, status == BlkifStatus.Okay ? Transfer(dataOp, sector, segments) : status);
    }

    // Before any I/O, as xen-blkback's dispatch_rw_block_io: each segment within its page, and xen_vbd_translate's
    // checks: no write (nor a flush, a REQ_OP_WRITE) to a read-only disk (-EACCES), the whole range on the disk.
    private BlkifStatus Check(bool write, ulong sector, ReadOnlySpan<BlkifRequestSegment> segments)
    {
        if (write && _storage.IsReadOnly)
            return BlkifStatus.Error;
        ulong total = 0;
        foreach (var s in segments)
        {
            if (s.LastSect >= BlkifLimits.SectorsPerPage || s.FirstSect > s.LastSect)
                return BlkifStatus.Error;
            total += (ulong)(s.LastSect - s.FirstSect + 1);
        }

        // A flush without segments names no sectors (xen_vbd_translate checks the range only when nr_sects != 0).
        if (total != 0 && (sector >= _storage.Sectors || total > _storage.Sectors - sector))
            return BlkifStatus.Error;
        return BlkifStatus.Okay;
    }

    // xen_vbd_translate for a write of count sectors (0: no range to check): a writable disk, the range on it.
    private bool IsWritableRange(ulong sector, ulong count) =>
        !_storage.IsReadOnly && (count == 0 || (sector < _storage.Sectors && count <= _storage.Sectors - sector));

    private BlkifStatus TryStorage(Action<IBlockStorage> action)
    {
        try
        {
            action(_storage);
            return BlkifStatus.Okay;
        }
        catch (IOException)
        {
            return BlkifStatus.Error;
        }
    }

    private bool TryReadIndirectSegments(BlkifIndirectGrefs grefs, int count)
    {
        int pages = (count + BlkifLimits.SegmentsPerIndirectPage - 1) / BlkifLimits.SegmentsPerIndirectPage;
        for (int p = 0; p < pages; p++)
        {
            if (_mapper.TryMap(_frontend, grefs[p], readOnly: true, out GrantMapping m) != GrantStatus.Okay)
                return false;
            int first = p * BlkifLimits.SegmentsPerIndirectPage;
            int n = Math.Min(BlkifLimits.SegmentsPerIndirectPage, count - first);
            MemoryMarshal.Cast<byte, BlkifRequestSegment>(_mapper.GetReadOnlyPage(m))[..n].CopyTo(_segments.AsSpan(first));
            _mapper.Unmap(m);
        }

        return true;
    }

    // The request passed Check.
    private BlkifStatus Transfer(BlkifOperation op, ulong sector, ReadOnlySpan<BlkifRequestSegment> segments)
    {
        bool write = op == BlkifOperation.Write;
        long offset = (long)sector * BlkifLimits.SectorSize;
        if (_buffer is not null)
            return TransferByCopy(write, offset, segments, _buffer);
        // Every data page is mapped before the disk is touched (xen-blkback's xen_blkbk_map, then fail_flush on a bad
        // grant): a request with one bad grant reads or writes nothing. Writable to read into it, read-only to write from it.
        Span<GrantMapping> maps = _maps.AsSpan(0, segments.Length);
        int mapped = 0;
        try
        {
            for (; mapped < segments.Length; mapped++)
            {
                if (_mapper.TryMap(_frontend, segments[mapped].Gref, readOnly: write, out maps[mapped]) != GrantStatus.Okay)
                {
                    return BlkifStatus.Error;
                }
            }

            for (int i = 0; i < segments.Length; i++)
            {
                var s = segments[i];
                int start = s.FirstSect * BlkifLimits.SectorSize, length = (s.LastSect - s.FirstSect + 1) * BlkifLimits.SectorSize;
                if (write)
                {
                    _storage.Write(offset, _mapper.GetReadOnlyPage(maps[i]).Slice(start, length));
                }
                else
                {
                    _storage.Read(offset, _mapper.GetPage(maps[i]).Slice(start, length));
                }

                offset += length;
            }
        }
        catch (IOException)
        {
            return BlkifStatus.Error;
        }
        finally
        {
            for (int i = 0; i < mapped; i++)
            {
                _mapper.Unmap(maps[i]);
            }
        }

        return BlkifStatus.Okay;
    }

    // Grant copy: the frontend's pages to the local buffer before writing the disk, or the local buffer to the frontend's
    // pages after reading it; each segment's copy keeps its offset in the page, all in one GNTTABOP_copy batch.
    private BlkifStatus TransferByCopy(bool write, long offset, ReadOnlySpan<BlkifRequestSegment> segments, IBackendBuffer buffer)
    {
        Span<GnttabCopy> ops = _copies.AsSpan(0, segments.Length);
        for (int i = 0; i < segments.Length; i++)
        {
            var s = segments[i];
            var local = new GnttabCopyPtr { Gmfn = buffer.Frame(i), DomId = VmmKit.Hypercall.DomainId.Self, Offset = (ushort)(s.FirstSect * BlkifLimits.SectorSize) };
            var remote = new GnttabCopyPtr { Ref = s.Gref, DomId = _frontend, Offset = local.Offset };
            ops[i] = write
                ? new GnttabCopy { Source = remote, Dest = local, Flags = (ushort)GrantCopyFlags.SourceGref }
                : new GnttabCopy { Source = local, Dest = remote, Flags = (ushort)GrantCopyFlags.DestGref };
            ops[i].Len = (ushort)((s.LastSect - s.FirstSect + 1) * BlkifLimits.SectorSize);
        }

        try
        {
            if (write)
            {
                _mapper.Copy(ops);
                foreach (ref readonly GnttabCopy op in ops)
                {
                    if (op.Status != (short)GrantStatus.Okay)
                        return BlkifStatus.Error;
                }
            }

            for (int i = 0; i < segments.Length;)
            {
                int start = write ? ops[i].Dest.Offset : ops[i].Source.Offset;
                Span<byte> page = buffer.Page(i);
                int length = ops[i].Len;
                int next = i + 1;
                // Segments that continue each other on pages adjacent in memory go to the disk in one call.
                while (next < segments.Length && start + length == (next - i) * SharedRing.PageSize
                    && segments[next].FirstSect == 0 && IsRightAfter(buffer.Page(next - 1), buffer.Page(next)))
                {
                    length += ops[next].Len;
                    next++;
                }

                // In bounds: the run covers pages i..next-1, which the check above proved contiguous.
                Span<byte> data = MemoryMarshal.CreateSpan(ref page[start], length);
                if (write)
                    _storage.Write(offset, data);
                else
                    _storage.Read(offset, data);
                offset += length;
                i = next;
            }
        }
        catch (IOException)
        {
            return BlkifStatus.Error;
        }

        if (!write)
        {
            _mapper.Copy(ops);
            foreach (ref readonly GnttabCopy op in ops)
            {
                if (op.Status != (short)GrantStatus.Okay)
                    return BlkifStatus.Error;
            }
        }

        return BlkifStatus.Okay;
    }

    private static bool IsRightAfter(Span<byte> previous, Span<byte> page) =>
        Unsafe.AreSame(ref Unsafe.Add(ref MemoryMarshal.GetReference(previous), SharedRing.PageSize), ref MemoryMarshal.GetReference(page));

    private void Respond(Answer a)
    {
        RequestsCompleted++;
        if (a.Status != BlkifStatus.Okay)
            RequestsFailed++;
        int offset = SharedRing.EntriesOffset + (int)((_rspProdPvt & (_size - 1)) * (uint)_entrySize);
        Span<byte> raw = stackalloc byte[Unsafe.SizeOf<BlkifResponse>()];
        if (_protocol == BlkifProtocol.X86_32)
        {
            var r = new BlkifX86_32Response { Id = a.Id, Operation = a.Operation, Status = (short)a.Status };
            MemoryMarshal.Write(raw, in r);
        }
        else
        {
            var r = new BlkifResponse { Id = a.Id, Operation = a.Operation, Status = (short)a.Status };
            MemoryMarshal.Write(raw, in r);
        }

        _ring.Write(offset, raw[.._responseSize]);
        _rspProdPvt++;
    }

    // RING_PUSH_RESPONSES_AND_CHECK_NOTIFY (xen/io/ring.h).
    private bool PushResponses()
    {
        ref uint rspProd = ref _ring.Index(SharedRing.RspProdOffset);
        uint old = Volatile.Read(ref rspProd), now = _rspProdPvt;
        if (old == now)
            return false;
        Interlocked.MemoryBarrier(); // wmb: responses before rsp_prod
        Volatile.Write(ref rspProd, now);
        Interlocked.MemoryBarrier(); // mb: rsp_prod before reading rsp_event
        uint evt = Volatile.Read(ref _ring.Index(SharedRing.RspEventOffset));
        return now - evt < now - old;
    }

    /// <summary>
    /// Makes a <see cref="Process"/> running on another thread return after the request it is serving, and every later
    /// one return at once; the owner then disposes the server once it holds it alone.
    /// </summary>
    internal void Stop() => _stopping = true;

    /// <summary>Unmaps the ring.</summary>
    public void Dispose() => _ring.Dispose();
}
