using System.Globalization;
using System.Runtime.InteropServices;
using VmmKit.Backends.Block;
using VmmKit.Backends.Rings;
using VmmKit.Backends.Xenbus;
using VmmKit.EventChannel;

namespace VmmKit.Backends.Tests;

/// <summary>
/// A blkfront written in C# for the tests (Linux's xen-blkfront in miniature): the ring in d1's RAM frames 0..2^order-1,
/// data pages from frame 32 up, all granted to d0; the xenbus handshake through d1's XenStore connection. Requests are
/// written as raw ring entries so tests can also write hostile ones.
/// </summary>
internal sealed class TestBlkfront : IDisposable
{
    public const int FirstDataFrame = 32;
    private readonly TestWorld _w;
    private readonly InProcessEventChannelClient _events;
    private readonly int _entrySize;
    private uint _reqProdPvt, _rspCons;

    public TestBlkfront(TestWorld world, BlkifProtocol protocol = BlkifProtocol.X86_64, int ringPageOrder = 0)
    {
        _w = world;
        Protocol = protocol;
        Order = ringPageOrder;
        _events = world.Dom1Events.Open();
        _entrySize = protocol == BlkifProtocol.X86_32 ? 108 : 112;
        RingSize = SharedRing.Size(1 << ringPageOrder, _entrySize);
        RingRefs = new uint[1 << ringPageOrder];
        for (int i = 0; i < RingRefs.Length; i++)
        {
            world.Page(i).Clear();
            Assert.True(world.Share.TryGrantForeignAccess(0, (ulong)i, false, out RingRefs[i]));
        }

        // SHARED_RING_INIT: req_event = rsp_event = 1.
        Index(SharedRing.ReqEventOffset) = 1;
        Index(SharedRing.RspEventOffset) = 1;
        DataRefs = new uint[TestWorld.RamFrames - FirstDataFrame];
        for (int i = 0; i < DataRefs.Length; i++)
            Assert.True(world.Share.TryGrantForeignAccess(0, (ulong)(FirstDataFrame + i), false, out DataRefs[i]));
        Port = _events.BindUnboundPort(0);
    }

    public BlkifProtocol Protocol { get; }
    public int Order { get; }
    public uint RingSize { get; }
    public uint[] RingRefs { get; }
    public uint[] DataRefs { get; }
    public uint Port { get; }
    public string Frontend { get; private set; } = "";

    public Span<byte> Data(int i) => _w.Page(FirstDataFrame + i);

    private ref uint Index(int offset) => ref MemoryMarshal.Cast<byte, uint>(_w.Page(0))[offset >> 2];

    /// <summary>Publishes the ring and goes Initialised, then waits for the backend to be Connected.</summary>
    public async Task ConnectAsync(string frontendPath, string backendPath, bool writeProtocol = true)
    {
        Frontend = frontendPath;
        var xs = _w.Store1;
        if (Order == 0)
        {
            await xs.WriteAsync($"{frontendPath}/ring-ref", RingRefs[0].ToString(CultureInfo.InvariantCulture));
        }
        else
        {
            await xs.WriteAsync($"{frontendPath}/ring-page-order", Order.ToString(CultureInfo.InvariantCulture));
            for (int i = 0; i < RingRefs.Length; i++)
                await xs.WriteAsync($"{frontendPath}/ring-ref{i}", RingRefs[i].ToString(CultureInfo.InvariantCulture));
        }

        await xs.WriteAsync($"{frontendPath}/event-channel", Port.ToString(CultureInfo.InvariantCulture));
        if (writeProtocol)
            await xs.WriteAsync($"{frontendPath}/protocol", Protocol == BlkifProtocol.X86_32 ? BlkifLimits.ProtocolX86_32 : BlkifLimits.ProtocolX86_64);
        await xs.WriteAsync($"{frontendPath}/state", ((int)XenbusState.Initialised).ToString(CultureInfo.InvariantCulture));
        await TestWorld.Until(async () => await xs.TryReadStringAsync($"{backendPath}/state") == "4", "backend Connected");
        await xs.WriteAsync($"{frontendPath}/state", ((int)XenbusState.Connected).ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Writes raw entry bytes at the next slot (not yet published).</summary>
    public void Queue(ReadOnlySpan<byte> entry)
    {
        var pages = new RingView(_w, 1 << Order);
        pages.Write(SharedRing.EntriesOffset + (int)((_reqProdPvt & (RingSize - 1)) * (uint)_entrySize), entry);
        _reqProdPvt++;
    }

    public void Queue(BlkifOperation op, ulong id, ulong sector, params BlkifRequestSegment[] segs)
    {
        Span<byte> raw = stackalloc byte[112];
        raw.Clear();
        if (Protocol == BlkifProtocol.X86_32)
        {
            var r = new BlkifX86_32Request { Operation = (byte)op, NrSegments = (byte)segs.Length, Handle = 0, Id = id, SectorNumber = sector };
            segs.AsSpan(0, Math.Min(segs.Length, 11)).CopyTo(r.Seg);
            MemoryMarshal.Write(raw, in r);
        }
        else
        {
            var r = new BlkifRequest { Operation = (byte)op, NrSegments = (byte)segs.Length, Handle = 0, Id = id, SectorNumber = sector };
            segs.AsSpan(0, Math.Min(segs.Length, 11)).CopyTo(r.Seg);
            MemoryMarshal.Write(raw, in r);
        }

        Queue(raw[.._entrySize]);
    }

    public void QueueIndirect(BlkifOperation op, ulong id, ulong sector, ushort nrSegments, params uint[] indirectGrefs)
    {
        Span<byte> raw = stackalloc byte[112];
        raw.Clear();
        var grefs = default(BlkifIndirectGrefs);
        indirectGrefs.AsSpan().CopyTo(grefs);
        if (Protocol == BlkifProtocol.X86_32)
            MemoryMarshal.Write(raw, new BlkifX86_32RequestIndirect { Operation = 6, IndirectOp = (byte)op, NrSegments = nrSegments, Id = id, SectorNumber = sector, IndirectGrefs = grefs });
        else
            MemoryMarshal.Write(raw, new BlkifRequestIndirect { Operation = 6, IndirectOp = (byte)op, NrSegments = nrSegments, Id = id, SectorNumber = sector, IndirectGrefs = grefs });
        Queue(raw[.._entrySize]);
    }

    /// <summary>Publishes queued requests (RING_PUSH_REQUESTS) and notifies.</summary>
    public void Push(uint? reqProd = null)
    {
        Interlocked.MemoryBarrier();
        Volatile.Write(ref Index(SharedRing.ReqProdOffset), reqProd ?? _reqProdPvt);
        _events.Notify(Port);
    }

    /// <summary>Waits for <paramref name="count"/> responses and returns them (id, operation, status).</summary>
    public List<(ulong Id, byte Op, BlkifStatus Status)> Responses(int count)
    {
        var list = new List<(ulong, byte, BlkifStatus)>();
        var view = new RingView(_w, 1 << Order);
        TestWorld.Until(() =>
        {
            uint prod = Volatile.Read(ref Index(SharedRing.RspProdOffset));
            Span<byte> raw = stackalloc byte[16];
            while (_rspCons != prod)
            {
                int size = Protocol == BlkifProtocol.X86_32 ? 12 : 16;
                view.Read(SharedRing.EntriesOffset + (int)((_rspCons & (RingSize - 1)) * (uint)_entrySize), raw[..size]);
                var r = MemoryMarshal.Read<BlkifResponse>(raw); // id, operation and status sit at the same offsets in both ABIs
                list.Add((r.Id, r.Operation, (BlkifStatus)r.Status));
                _rspCons++;
            }

            Volatile.Write(ref Index(SharedRing.RspEventOffset), _rspCons + 1);
            return list.Count >= count;
        }, $"{count} responses");
        return list;
    }

    public (ulong Id, byte Op, BlkifStatus Status) One(BlkifOperation op, ulong id, ulong sector, params BlkifRequestSegment[] segs)
    {
        Queue(op, id, sector, segs);
        Push();
        return Responses(1).Single();
    }

    public static BlkifRequestSegment Seg(uint gref, byte first = 0, byte last = 7) => new() { Gref = gref, FirstSect = first, LastSect = last };

    public void Dispose() => _events.Dispose();

    /// <summary>The frontend's own view of its ring pages (frames 0..n-1), crossing page boundaries.</summary>
    private readonly struct RingView(TestWorld w, int pages)
    {
        public void Write(int offset, ReadOnlySpan<byte> src)
        {
            while (!src.IsEmpty)
            {
                int n = Math.Min(src.Length, 4096 - (offset % 4096));
                src[..n].CopyTo(w.Page(offset / 4096).Slice(offset % 4096));
                src = src[n..];
                offset += n;
            }

            _ = pages;
        }

        public void Read(int offset, Span<byte> dst)
        {
            while (!dst.IsEmpty)
            {
                int n = Math.Min(dst.Length, 4096 - (offset % 4096));
                w.Page(offset / 4096).Slice(offset % 4096, n).CopyTo(dst);
                dst = dst[n..];
                offset += n;
            }
        }
    }
}
