using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Microsoft.Win32.SafeHandles;
using VmmKit.Backends.Block;
using VmmKit.Backends.Rings;
using VmmKit.Ept;
using VmmKit.GrantTable;

namespace VmmKit.Backends.Benchmarks;

/// <summary>
/// blkback's data path: a C# frontend (d1) fills the ring with 32 requests of <see cref="RequestKiB"/> (4 KiB: one
/// segment; 64 KiB: an indirect request of 16 segments, as Linux's blkfront sends them when the backend offers
/// indirect descriptors), and <see cref="BlkifRingServer.Process"/> serves them by grant mapping each page, against a
/// 64 MiB raw image in the page cache. The baselines read and write the same bytes at the same offsets of the same file
/// with <see cref="RandomAccess"/> (what <c>dd</c> does). Each invocation moves 32 × <see cref="RequestKiB"/> KiB:
/// MB/s = that / the time per invocation.
/// </summary>
[MemoryDiagnoser]
public unsafe class BlkbackBenchmarks
{
    private const int Requests = 32;
    private const int ImageBytes = 64 << 20;
    private MachineMemory _memory = null!;
    private InProcessGrantMapper _mapper = null!;
    private BlkifRingServer _server = null!;
    private RawImageStorage _storage = null!;
    private SafeFileHandle _file = null!;
    private string _path = "";
    private MachineFrameNumber[] _ram = null!;
    private uint[] _dataRefs = null!;
    private uint[] _indirectRefs = null!;
    private byte[] _buffer = null!;
    private uint _prod;
    private long _offset;

    /// <summary>Request size.</summary>
    [Params(4, 64)]
    public int RequestKiB { get; set; }

    /// <summary>Data path: grant map per segment (false) or one batched grant copy per request into d0's own pages (true).</summary>
    [Params(false, true)]
    public bool Copy { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _path = Path.Combine(Path.GetTempPath(), $"vmmkit-blkback-bench-{Environment.ProcessId}.img");
        File.WriteAllBytes(_path, new byte[ImageBytes]);
        _memory = new MachineMemory(64UL << 20);
        var grants = new GrantTableHost(new FrameReferences(_memory));
        var ept0 = new EptTables(_memory, new FrameOwner(0));
        GrantDomain d0 = grants.CreateDomain(0, ept0);
        var local = new MachineFrameNumber[16];
        for (int i = 0; i < local.Length; i++)
        {
            local[i] = _memory.AllocateFrame(new FrameOwner(0));
            ept0.Map(new GuestFrameNumber((ulong)(0x20000 + i)).Address, local[i], 1, EptAccess.ReadWriteExecute);
        }
        var ept1 = new EptTables(_memory, new FrameOwner(1));
        int pages = 1 + (Requests * 16) + Requests;
        _ram = new MachineFrameNumber[pages];
        for (int i = 0; i < pages; i++)
        {
            _ram[i] = _memory.AllocateFrame(new FrameOwner(1));
            ept1.Map(new GuestFrameNumber((ulong)i).Address, _ram[i], 1, EptAccess.ReadWriteExecute);
        }

        GrantDomain d1 = grants.CreateDomain(1, ept1);
        Span<ulong> frames = stackalloc ulong[4];
        if (grants.SetupTable(d1, false, VmmKit.Hypercall.DomainId.Self, 4, frames) != GrantStatus.Okay) // GNTTABOP_setup_table: 2048 entries
            throw new InvalidOperationException("setup_table failed");
        var share = new InProcessGrantShare(grants, d1);
        var refs = new uint[pages];
        for (int i = 0; i < pages; i++)
        {
            if (!share.TryGrantForeignAccess(0, (ulong)i, false, out refs[i]))
                throw new InvalidOperationException("out of grant references");
        }

        _dataRefs = refs[1..(1 + (Requests * 16))];
        _indirectRefs = refs[(1 + (Requests * 16))..];
        _mapper = new InProcessGrantMapper(grants, d0, new GuestFrameNumber(0x10000), 64);
        var ring = Ring;
        MemoryMarshal.Cast<byte, uint>(ring)[1] = 1; // SHARED_RING_INIT
        MemoryMarshal.Cast<byte, uint>(ring)[3] = 1;
        GrantedPages.TryMap(_mapper, 1, [refs[0]], false, out GrantedPages? mapped);
        _storage = new RawImageStorage(_path);
        _server = new BlkifRingServer(_mapper, 1, mapped!, BlkifProtocol.X86_64, _storage, maxIndirectSegments: 16,
            Copy ? new LocalPages(_memory, local, 0x20000) : null);
        _file = File.OpenHandle(_path, FileMode.Open, FileAccess.ReadWrite);
        _buffer = new byte[RequestKiB << 10];
        // Indirect segment lists: request r uses data pages [16r, 16r+16).
        for (int r = 0; r < Requests; r++)
        {
            var segs = MemoryMarshal.Cast<byte, BlkifRequestSegment>(_memory.GetFrame(_ram[1 + (Requests * 16) + r]));
            for (int s = 0; s < 16; s++)
                segs[s] = new BlkifRequestSegment { Gref = _dataRefs[(r * 16) + s], FirstSect = 0, LastSect = 7 };
        }
    }

    private sealed class LocalPages(MachineMemory memory, MachineFrameNumber[] frames, ulong firstGfn) : IBackendBuffer
    {
        public int PageCount => frames.Length;
        public ulong Frame(int index) => firstGfn + (ulong)index;
        public Span<byte> Page(int index) => memory.GetFrame(frames[index]);
    }

    private Span<byte> Ring => _memory.GetFrame(_ram[0]);

    [GlobalCleanup]
    public void Cleanup()
    {
        _server.Dispose();
        _storage.Dispose();
        _file.Dispose();
        _memory.Dispose();
        File.Delete(_path);
    }

    private void Serve(BlkifOperation op)
    {
        Span<byte> ring = Ring;
        long bytes = RequestKiB << 10;
        for (int r = 0; r < Requests; r++)
        {
            ulong sector = (ulong)(_offset / 512);
            int slot = 64 + (int)((_prod & 31) * 112);
            if (RequestKiB == 4)
            {
                var req = new BlkifRequest { Operation = (byte)op, NrSegments = 1, Id = (ulong)r, SectorNumber = sector };
                req.Seg[0] = new BlkifRequestSegment { Gref = _dataRefs[r * 16], FirstSect = 0, LastSect = 7 };
                MemoryMarshal.Write(ring[slot..], in req);
            }
            else
            {
                var grefs = default(BlkifIndirectGrefs);
                grefs[0] = _indirectRefs[r];
                var req = new BlkifRequestIndirect { Operation = (byte)BlkifOperation.Indirect, IndirectOp = (byte)op, NrSegments = 16, Id = (ulong)r, SectorNumber = sector, IndirectGrefs = grefs };
                MemoryMarshal.Write(ring[slot..], in req);
            }

            _prod++;
            _offset = (_offset + bytes) % ImageBytes;
        }

        Volatile.Write(ref MemoryMarshal.Cast<byte, uint>(ring)[0], _prod);
        _server.Process();
        if (_server.RequestsFailed != 0)
            throw new InvalidOperationException("a request failed");
    }

    /// <summary>blkback: 32 write requests through the ring (grant map, write to the image).</summary>
    [Benchmark]
    public void BlkbackWrite() => Serve(BlkifOperation.Write);

    /// <summary>blkback: 32 read requests through the ring (grant map, read from the image).</summary>
    [Benchmark]
    public void BlkbackRead() => Serve(BlkifOperation.Read);

    /// <summary>The same bytes written to the same offsets of the image with RandomAccess.Write (dd's path).</summary>
    [Benchmark(Baseline = true)]
    public void FileWrite() => Plain(write: true);

    /// <summary>The same bytes read from the same offsets with RandomAccess.Read.</summary>
    [Benchmark]
    public void FileRead() => Plain(write: false);

    private void Plain(bool write)
    {
        long bytes = RequestKiB << 10;
        for (int r = 0; r < Requests; r++)
        {
            if (write)
                RandomAccess.Write(_file, _buffer, _offset);
            else
                RandomAccess.Read(_file, _buffer, _offset);
            _offset = (_offset + bytes) % ImageBytes;
        }
    }
}
