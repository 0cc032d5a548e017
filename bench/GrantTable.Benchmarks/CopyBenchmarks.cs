using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// GNTTABOP_copy as a network or block backend uses it: batches of copies from the frontend's granted pages into the
/// backend's own frames (or, with <see cref="IntoGrant"/>, the other way), next to a plain memcpy of the same bytes
/// between the same frames (the baseline; goal: the copy reaches at least 80% of its throughput). Each invocation runs
/// one batch of <see cref="Batch"/> operations and the next invocation continues where it stopped, so successive
/// batches walk through all <see cref="Pages"/> pages.
/// With <see cref="Length"/> = 4096 every operation copies a whole page from its own grant; with 512 the operations
/// cut each granted page into eight 512-byte pieces in order (packet fragments or sectors of one frontend page), so
/// eight consecutive operations use the same grant.
/// </summary>
[MemoryDiagnoser]
public unsafe class CopyBenchmarks
{
    private BenchMachine _m = null!;
    private GnttabCopy[] _ops = null!;
    private byte*[] _src = null!;
    private byte*[] _dst = null!;
    private int _next;
    private readonly Lock _floorLock = new(); // the same kind of lock as GrantTableHost's
    private uint[] _floorEntries = null!;
    private HypercallDispatcher<GrantDomain> _dispatcher = null!;
    private GuestPhysicalMemory _backPhysical = null!;
    private PagingDisabledGuestMemory _backVirtual = null!;
    private ulong _opsGpa;
    private bool _hypercallRan;
    private const short NotRun = 1; // a status no operation gets (GNTST_* are 0 or negative)

    /// <summary>Bytes per copy operation.</summary>
    [Params(4096, 512)]
    public int Length { get; set; } = 4096;

    /// <summary>Operations per GNTTABOP_copy call.</summary>
    [Params(1, 16)]
    public int Batch { get; set; } = 16;

    /// <summary>
    /// The direction: false copies from the frontend's grants into the backend's frames (a block write, a transmitted
    /// packet: <c>GNTCOPY_source_gref</c>), true from the backend's frames into the grants (a block read, a received
    /// packet: <c>GNTCOPY_dest_gref</c>).
    /// </summary>
    [Params(false, true)]
    public bool IntoGrant { get; set; }

    /// <summary>Pages per side (64: both sides stay in the L2 cache, so the copy's fixed cost shows most).</summary>
    public int Pages { get; set; } = BenchMachine.Pages;

    /// <summary>Operations that cover every page once.</summary>
    public int OpsPerPass => Pages * (Page.PageSize / Length);

    [GlobalSetup]
    public void Setup()
    {
        _m = new BenchMachine(Pages);
        int perPage = Page.PageSize / Length;
        _ops = new GnttabCopy[OpsPerPass];
        _src = new byte*[OpsPerPass];
        _dst = new byte*[OpsPerPass];
        for (int i = 0; i < OpsPerPass; i++)
        {
            int page = i / perPage;
            ushort offset = (ushort)(i % perPage * Length);
            int back = (page + 7) % Pages;
            var grant = new GnttabCopyPtr { Ref = _m.Refs[page], DomId = 1, Offset = offset };
            var frame = new GnttabCopyPtr { Gmfn = (ulong)back, DomId = DomainId.Self, Offset = offset };
            byte* granted = _m.Memory.GetFramePointer(_m.FrontRam[page]) + offset;
            byte* own = _m.Memory.GetFramePointer(_m.BackRam[back]) + offset;
            _ops[i] = new GnttabCopy
            {
                Source = IntoGrant ? frame : grant,
                Dest = IntoGrant ? grant : frame,
                Len = (ushort)Length,
                Flags = (ushort)(IntoGrant ? GrantCopyFlags.DestGref : GrantCopyFlags.SourceGref),
            };
            _src[i] = IntoGrant ? own : granted;
            _dst[i] = IntoGrant ? granted : own;
        }

        _floorEntries = new uint[_m.Refs.Max() + 1];
        _next = 0;

        // The same operations in the backend's memory, for GrantCopyHypercall.
        int bytes = OpsPerPass * Unsafe.SizeOf<GnttabCopy>();
        _opsGpa = _m.AddBackPages((bytes + Page.PageSize - 1) / Page.PageSize);
        _backPhysical = new GuestPhysicalMemory(_m.Memory, _m.Back.Ept.Pointer);
        _backVirtual = new PagingDisabledGuestMemory(_backPhysical);
        GnttabCopy[] inGuest = [.. _ops];
        foreach (ref GnttabCopy op in inGuest.AsSpan())
        {
            op.Status = NotRun; // so Verify tells a status the hypercall wrote from one it never reached
        }

        if (!_backPhysical.TryWrite(new GuestPhysicalAddress(_opsGpa), MemoryMarshal.AsBytes(inGuest.AsSpan()), out _))
        {
            throw new InvalidOperationException("cannot write the operations into the backend");
        }

        _dispatcher = new HypercallDispatcher<GrantDomain>();
        new GrantTableHypercalls<GrantDomain>(_m.Host, new Self()).Register(_dispatcher);
    }

    // The calling domain is the grant domain itself; an unprivileged backend.
    private sealed class Self : IGrantTableCallerResolver<GrantDomain>
    {
        public GrantDomain? GetDomain(GrantDomain caller) => caller;

        public bool IsPrivileged(GrantDomain caller) => false;
    }

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    /// <summary>The same bytes between the same frames with a plain memcpy (times are per batch).</summary>
    [Benchmark(Baseline = true)]
    public void Memcpy()
    {
        int first = _next;
        for (int i = first; i < first + Batch; i++)
        {
            Buffer.MemoryCopy(_src[i], _dst[i], Length, Length);
        }

        _next = first + Batch == OpsPerPass ? 0 : first + Batch;
    }

    /// <summary>
    /// The same bytes between the same frames with the copy GrantTableHost uses (<c>FrameCopy</c>: a loop of 32-byte vector
    /// loads and stores, eight loads in flight from 2 KiB up), with nothing around it: how much
    /// of the difference to <see cref="Memcpy"/> is the copy itself.
    /// </summary>
    [Benchmark]
    public void HostCopier()
    {
        int first = _next;
        for (int i = first; i < first + Batch; i++)
        {
            FrameCopy.Copy(_src[i], _dst[i], (uint)Length);
        }

        _next = first + Batch == OpsPerPass ? 0 : first + Batch;
    }

    /// <summary>
    /// The floor the grant protocol sets (Xen's gnttab_copy does the same work, around the memcpy): the copy of
    /// <see cref="HostCopier"/> inside one lock per call, plus, each time an operation moves to another grant, the two
    /// operations on a guest-visible entry word that claiming and releasing a grant require (a compare-exchange setting
    /// GTF_reading; an atomic AND clearing it after the last use, as Xen's gnttab_clear_flags and GrantTableHost do).
    /// No check, no lookup: what is left once every avoidable cost is gone.
    /// </summary>
    [Benchmark]
    public void ProtocolFloor()
    {
        int first = _next;
        lock (_floorLock)
        {
            uint held = uint.MaxValue;
            for (int i = first; i < first + Batch; i++)
            {
                uint gref = GrantOf(i);
                if (gref != held)
                {
                    if (held != uint.MaxValue)
                    {
                        Release(ref _floorEntries[held]);
                    }

                    uint combo = Volatile.Read(ref _floorEntries[gref]);
                    Interlocked.CompareExchange(ref _floorEntries[gref], combo | ClaimBits, combo);
                    held = gref;
                }

                FrameCopy.Copy(_src[i], _dst[i], (uint)Length);
            }

            Release(ref _floorEntries[held]);
        }

        _next = first + Batch == OpsPerPass ? 0 : first + Batch;
    }

    private uint GrantOf(int op) => IntoGrant ? _ops[op].Dest.Ref : _ops[op].Source.Ref;

    // What a claim sets: GTF_reading, and GTF_writing too for a grant copied into.
    private uint ClaimBits =>
        IntoGrant ? (uint)(GrantEntryFlags.Reading | GrantEntryFlags.Writing) : (uint)GrantEntryFlags.Reading;

    // Clearing GTF_reading (and GTF_writing) after the last use: an atomic AND, as GrantTableHost does (grant_table.h
    // lets the granter set or clear GTF_readonly while the grant is in use, which a plain load and store could undo).
    private static void Release(ref uint entry) =>
        Interlocked.And(ref entry, ~(uint)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));

    /// <summary>
    /// <see cref="ProtocolFloor"/> in the order that needs the fewest waits: every grant of the call claimed first
    /// (one compare-exchange each), then every copy, then every release. Each compare-exchange waits for the stores
    /// before it, so in <see cref="ProtocolFloor"/>'s order each operation's memcpy is drained before the next claim,
    /// here once per call. An implementation in this order would set
    /// GTF_reading on later operations' grants before earlier operations' bytes are copied (Xen does not); it is
    /// measured as the lower bound of any ordering.
    /// </summary>
    [Benchmark]
    public void ProtocolFloorWindow()
    {
        int first = _next;
        lock (_floorLock)
        {
            uint held = uint.MaxValue;
            for (int i = first; i < first + Batch; i++)
            {
                uint gref = GrantOf(i);
                if (gref != held)
                {
                    uint combo = Volatile.Read(ref _floorEntries[gref]);
                    Interlocked.CompareExchange(ref _floorEntries[gref], combo | ClaimBits, combo);
                    held = gref;
                }
            }

            for (int i = first; i < first + Batch; i++)
            {
                FrameCopy.Copy(_src[i], _dst[i], (uint)Length);
            }

            held = uint.MaxValue;
            for (int i = first; i < first + Batch; i++)
            {
                uint gref = GrantOf(i);
                if (gref != held)
                {
                    Release(ref _floorEntries[gref]);
                    held = gref;
                }
            }
        }

        _next = first + Batch == OpsPerPass ? 0 : first + Batch;
    }

    /// <summary>One GNTTABOP_copy call of <see cref="Batch"/> operations (a grant on one side, a DOMID_SELF frame on the
    /// other).</summary>
    [Benchmark]
    public void GrantCopy()
    {
        int first = _next;
        _m.Host.Copy(_m.Back, _ops.AsSpan(first, Batch));
        _next = first + Batch == OpsPerPass ? 0 : first + Batch;
    }

    /// <summary>
    /// The same call as <see cref="GrantCopy"/> as a guest makes it: <c>__HYPERVISOR_grant_table_op(GNTTABOP_copy,
    /// uop, count)</c> through VmmKit.Hypercall's dispatcher, the operations read from the backend's memory and each
    /// status written back there (what a guest sees; <see cref="GrantCopy"/> is the in-process API a VMM calls).
    /// </summary>
    [Benchmark]
    public void GrantCopyHypercall()
    {
        int first = _next;
        HypercallArguments args = default;
        args[0] = (ulong)GrantTableOp.Copy;
        args[1] = _opsGpa + ((ulong)first * (ulong)Unsafe.SizeOf<GnttabCopy>());
        args[2] = (ulong)Batch;
        HypercallCall<GrantDomain> call = _dispatcher.CreateCall(_m.Back, (uint)HypercallNumber.GrantTableOp, HypercallAbi.Native64, _backVirtual, args);
        if (_dispatcher.Invoke(ref call) != 0)
        {
            throw new InvalidOperationException("GNTTABOP_copy hypercall failed");
        }

        _hypercallRan = true;

        _next = first + Batch == OpsPerPass ? 0 : first + Batch;
    }

    /// <summary>
    /// Checks the last batches: every status is GNTST_okay, in the operations and, once <see cref="GrantCopyHypercall"/>
    /// has run, in the backend's copy of them (a failing copy would make the figures meaningless).
    /// </summary>
    public void Verify()
    {
        var inGuest = new GnttabCopy[_ops.Length];
        if (!_backPhysical.TryRead(new GuestPhysicalAddress(_opsGpa), MemoryMarshal.AsBytes(inGuest.AsSpan()), out _))
        {
            throw new InvalidOperationException("cannot read the operations back");
        }

        foreach (GnttabCopy op in _hypercallRan ? _ops.Concat(inGuest) : _ops)
        {
            if (op.Status != 0)
            {
                throw new InvalidOperationException($"GNTTABOP_copy failed: {(GrantStatus)op.Status}");
            }
        }
    }
}
