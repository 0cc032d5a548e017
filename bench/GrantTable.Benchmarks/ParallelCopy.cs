using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// Backends copying at the same time, all domains in one <see cref="GrantTableHost"/>: each thread copies from its own
/// frontend's grants into frames of its own, either as one control domain whose backends run on its vCPUs (one caller
/// for all threads, as Xen's dom0 serves every frontend) or as a backend domain per frontend (driver domains), or
/// from one frontend's grants, a thread per queue of a multi-queue frontend (one granter for all threads), through
/// the API and through the hypercall (each thread a vCPU with its own view of the backend's memory, its operations in
/// pages of its own). Beside it, as many threads each memcpy the same bytes between the same frames. Rounds alternate
/// (one thread and all threads; memcpy, copy and hypercall) and the fastest of each is kept; the figures are the
/// copies' total throughput against the memcpys'.
/// </summary>
internal static unsafe class ParallelCopy
{
    private const int RoundMilliseconds = 300;
    private const int Rounds = 5;

    private static readonly (int Pages, int Length, int Batch)[] Shapes =
    [
        (64, 4096, 1), (64, 4096, 16), (64, 512, 16), (4096, 4096, 16),
    ];

    public static void Run(TextWriter output, int threads)
    {
        foreach (Layout layout in (Layout[])[Layout.OneBackend, Layout.BackendPerFrontend, Layout.OneFrontendQueues])
        {
            output.WriteLine(layout switch
            {
                Layout.OneBackend => "one backend domain, a thread per frontend:",
                Layout.BackendPerFrontend => "a backend domain per frontend:",
                _ => "one frontend, a thread per queue (one backend domain):",
            });
            foreach ((int pages, int length, int batch) in Shapes)
            {
                Run(output, threads, pages, length, batch, layout);
            }
        }
    }

    /// <summary>Who copies from whom.</summary>
    private enum Layout
    {
        /// <summary>A control domain serving every frontend: one caller for all threads, a frontend per thread.</summary>
        OneBackend,

        /// <summary>Driver domains: a backend domain and a frontend per thread.</summary>
        BackendPerFrontend,

        /// <summary>
        /// One multi-queue frontend (Linux's netfront and blkfront open a queue per vCPU) served by one backend domain,
        /// a thread per queue: every thread copies from the same granter, each from grants of its own.
        /// </summary>
        OneFrontendQueues,
    }

    private static void Run(TextWriter output, int threads, int pages, int length, int batch, Layout layout)
    {
        using var m = new Machine(threads, pages, length, layout);
        double memcpy1 = 0, copy1 = 0, hypercall1 = 0, memcpyN = 0, copyN = 0, hypercallN = 0;
        for (int r = 0; r < Rounds; r++)
        {
            memcpy1 = Math.Max(memcpy1, Measure(m, 1, batch, Mode.Memcpy));
            copy1 = Math.Max(copy1, Measure(m, 1, batch, Mode.Copy));
            hypercall1 = Math.Max(hypercall1, Measure(m, 1, batch, Mode.Hypercall));
            memcpyN = Math.Max(memcpyN, Measure(m, threads, batch, Mode.Memcpy));
            copyN = Math.Max(copyN, Measure(m, threads, batch, Mode.Copy));
            hypercallN = Math.Max(hypercallN, Measure(m, threads, batch, Mode.Hypercall));
        }

        m.Verify();
        double gb = length / 1e9;
        output.WriteLine(
            $"{pages,4} pages, {length,4} B x {batch,2}: 1 thread memcpy {memcpy1 * gb,5:F1} GB/s, copy {100 * copy1 / memcpy1,3:F0}%, " +
            $"hypercall {100 * hypercall1 / memcpy1,3:F0}%; {threads} threads memcpy {memcpyN * gb,5:F1} GB/s, " +
            $"copy {copyN * gb,5:F1} GB/s ({100 * copyN / memcpyN,3:F0}%, {copyN / copy1:F2}x one thread's), " +
            $"hypercall {hypercallN * gb,5:F1} GB/s ({100 * hypercallN / memcpyN,3:F0}%, {hypercallN / hypercall1:F2}x)");
    }

    // Operations per second over all threads, each thread running calls of `batch` operations for one round.
    private static double Measure(Machine m, int threads, int batch, Mode mode)
    {
        var counts = new long[threads];
        using var start = new Barrier(threads + 1);
        var workers = new Thread[threads];
        long stopAt = 0;
        for (int t = 0; t < threads; t++)
        {
            int pair = t;
            workers[t] = new Thread(() =>
            {
                start.SignalAndWait();
                long n = 0;
                int next = 0;
                while (Stopwatch.GetTimestamp() < Volatile.Read(ref stopAt))
                {
                    for (int k = 0; k < 64; k++)
                    {
                        next = mode switch
                        {
                            Mode.Copy => m.Copy(pair, next, batch),
                            Mode.Hypercall => m.Hypercall(pair, next, batch),
                            _ => m.Memcpy(pair, next, batch),
                        };
                        n += batch;
                    }
                }

                counts[pair] = n;
            });
            workers[t].Start();
        }

        Volatile.Write(ref stopAt, long.MaxValue);
        start.SignalAndWait();
        long begin = Stopwatch.GetTimestamp();
        Volatile.Write(ref stopAt, begin + (Stopwatch.Frequency * RoundMilliseconds / 1000));
        foreach (Thread w in workers)
        {
            w.Join();
        }

        double seconds = (double)(Stopwatch.GetTimestamp() - begin) / Stopwatch.Frequency;
        return counts.Sum() / seconds;
    }

    private enum Mode
    {
        Memcpy,
        Copy,
        Hypercall,
    }

    /// <summary>
    /// Frontends (odd domids) each granting every page to its backend: the next domid, or domain 0 for all of them,
    /// whose RAM then holds a region of frames per frontend.
    /// </summary>
    private sealed class Machine : IDisposable
    {
        private readonly MachineMemory _memory;
        private readonly GrantTableHost _host;
        private readonly GrantDomain[] _backs;
        private readonly GnttabCopy[][] _ops;
        private readonly byte*[][] _src;
        private readonly byte*[][] _dst;
        private readonly int _length;
        private readonly HypercallDispatcher<GrantDomain> _dispatcher = new();
        private readonly ulong[] _opsGpa;
        private readonly PagingDisabledGuestMemory[] _views;
        private readonly GuestPhysicalMemory[] _physical;

        public Machine(int pairs, int pages, int length, Layout layout)
        {
            _length = length;
            _memory = new MachineMemory(((ulong)pairs * 2 * (ulong)pages * Page.PageSize) + (32UL << 20));
            _host = new GrantTableHost(new FrameReferences(_memory));
            _backs = new GrantDomain[pairs];
            _ops = new GnttabCopy[pairs][];
            _src = new byte*[pairs][];
            _dst = new byte*[pairs][];
            MachineFrameNumber[]? sharedRam = null, sharedFrontRam = null;
            GrantDomain? shared = layout != Layout.BackendPerFrontend ? AddDomain(0, pairs * pages, out sharedRam) : null;
            GrantDomain? sharedFront = layout == Layout.OneFrontendQueues ? AddDomain(1, pairs * pages, out sharedFrontRam) : null;
            InProcessGrantShare? sharedShare = null;
            int perPage = Page.PageSize / length;
            for (int p = 0; p < pairs; p++)
            {
                // The frontend's pages this thread copies from: its own domain's, or its queue's part of the one's.
                GrantDomain front;
                MachineFrameNumber[] frontRam;
                if (sharedFront is not null)
                {
                    (front, frontRam) = (sharedFront, sharedFrontRam![(p * pages)..((p + 1) * pages)]);
                }
                else
                {
                    front = AddDomain((ushort)(1 + (2 * p)), pages, out frontRam);
                }

                MachineFrameNumber[] backRam;
                int first = 0; // the backend's first frame for this frontend
                GrantDomain back;
                if (shared is not null)
                {
                    (back, backRam, first) = (shared, sharedRam!, p * pages);
                }
                else
                {
                    back = AddDomain((ushort)(2 + (2 * p)), pages, out backRam);
                }

                _backs[p] = back;
                InProcessGrantShare? share = sharedShare;
                if (share is null)
                {
                    int entries = sharedFront is not null ? pairs * pages : pages;
                    uint frames = (uint)((entries + 8 + GrantEntryV1.PerFrame - 1) / GrantEntryV1.PerFrame);
                    if (_host.SetupTable(front, false, DomainId.Self, frames, new ulong[frames]) != GrantStatus.Okay)
                    {
                        throw new InvalidOperationException("cannot grow the grant table");
                    }

                    share = new InProcessGrantShare(_host, front);
                    sharedShare = sharedFront is not null ? share : null;
                }

                ulong firstFrontGfn = sharedFront is not null ? (ulong)(p * pages) : 0;
                _ops[p] = new GnttabCopy[pages * perPage];
                _src[p] = new byte*[pages * perPage];
                _dst[p] = new byte*[pages * perPage];
                for (int page = 0; page < pages; page++)
                {
                    if (!share.TryGrantForeignAccess(back.Id, firstFrontGfn + (ulong)page, readOnly: true, out uint gref))
                    {
                        throw new InvalidOperationException("no grant reference");
                    }

                    _memory.GetFrame(frontRam[page]).Fill((byte)(page + p));
                    int own = first + ((page + 7) % pages);
                    for (int piece = 0; piece < perPage; piece++)
                    {
                        int i = (page * perPage) + piece;
                        ushort offset = (ushort)(piece * length);
                        _ops[p][i] = new GnttabCopy
                        {
                            Source = new GnttabCopyPtr { Ref = gref, DomId = front.Id, Offset = offset },
                            Dest = new GnttabCopyPtr { Gmfn = (ulong)own, DomId = DomainId.Self, Offset = offset },
                            Len = (ushort)length,
                            Flags = (ushort)GrantCopyFlags.SourceGref,
                        };
                        _src[p][i] = _memory.GetFramePointer(frontRam[page]) + offset;
                        _dst[p][i] = _memory.GetFramePointer(backRam[own]) + offset;
                    }
                }
            }

            // Each pair's operations also in its backend's memory, past the RAM of every pair, for the hypercall.
            _opsGpa = new ulong[pairs];
            _views = new PagingDisabledGuestMemory[pairs];
            _physical = new GuestPhysicalMemory[pairs];
            int opsPages = ((_ops[0].Length * Unsafe.SizeOf<GnttabCopy>()) + Page.PageSize - 1) / Page.PageSize;
            for (int p = 0; p < pairs; p++)
            {
                ulong firstGfn = (ulong)((pairs * pages) + (p * opsPages));
                for (int i = 0; i < opsPages; i++)
                {
                    MachineFrameNumber frame = _memory.AllocateFrame(new FrameOwner(_backs[p].Id));
                    _backs[p].Ept.Map(new GuestFrameNumber(firstGfn + (ulong)i).Address, frame, 1, EptAccess.ReadWriteExecute);
                }

                _opsGpa[p] = new GuestFrameNumber(firstGfn).Address.Value;
                var physical = _physical[p] = new GuestPhysicalMemory(_memory, _backs[p].Ept.Pointer);
                _views[p] = new PagingDisabledGuestMemory(physical);
                if (!physical.TryWrite(new GuestPhysicalAddress(_opsGpa[p]), MemoryMarshal.AsBytes(_ops[p].AsSpan()), out _))
                {
                    throw new InvalidOperationException("cannot write the operations into the backend");
                }
            }

            new GrantTableHypercalls<GrantDomain>(_host, new Self()).Register(_dispatcher);
        }

        // The calling domain is the grant domain itself; an unprivileged backend.
        private sealed class Self : IGrantTableCallerResolver<GrantDomain>
        {
            public GrantDomain? GetDomain(GrantDomain caller) => caller;

            public bool IsPrivileged(GrantDomain caller) => false;
        }

        private GrantDomain AddDomain(ushort id, int pages, out MachineFrameNumber[] ram)
        {
            var ept = new EptTables(_memory, new FrameOwner(id));
            ram = new MachineFrameNumber[pages];
            for (int i = 0; i < pages; i++)
            {
                ram[i] = _memory.AllocateFrame(new FrameOwner(id));
                ept.Map(new GuestFrameNumber((ulong)i).Address, ram[i], 1, EptAccess.ReadWriteExecute);
            }

            return _host.CreateDomain(id, ept);
        }

        // One call of `batch` operations of pair `p` from operation `next`; returns where the next call starts.
        public int Copy(int p, int next, int batch)
        {
            _host.Copy(_backs[p], _ops[p].AsSpan(next, batch));
            return next + batch == _ops[p].Length ? 0 : next + batch;
        }

        // The same call as a vCPU of the backend makes it: __HYPERVISOR_grant_table_op(GNTTABOP_copy, uop, batch).
        public int Hypercall(int p, int next, int batch)
        {
            HypercallArguments args = default;
            args[0] = (ulong)GrantTableOp.Copy;
            args[1] = _opsGpa[p] + ((ulong)next * (ulong)Unsafe.SizeOf<GnttabCopy>());
            args[2] = (ulong)batch;
            HypercallCall<GrantDomain> call = _dispatcher.CreateCall(_backs[p], (uint)HypercallNumber.GrantTableOp, HypercallAbi.Native64, _views[p], args);
            if (_dispatcher.Invoke(ref call) != 0)
            {
                throw new InvalidOperationException("GNTTABOP_copy hypercall failed");
            }

            return next + batch == _ops[p].Length ? 0 : next + batch;
        }

        public int Memcpy(int p, int next, int batch)
        {
            for (int i = next; i < next + batch; i++)
            {
                Buffer.MemoryCopy(_src[p][i], _dst[p][i], _length, _length);
            }

            return next + batch == _ops[p].Length ? 0 : next + batch;
        }

        // Every copy succeeded (through the API and the hypercall) and the backend's frames hold the frontend's bytes.
        public void Verify()
        {
            for (int p = 0; p < _ops.Length; p++)
            {
                var inGuest = new GnttabCopy[_ops[p].Length];
                if (!_physical[p].TryRead(new GuestPhysicalAddress(_opsGpa[p]), MemoryMarshal.AsBytes(inGuest.AsSpan()), out _) ||
                    inGuest.Any(op => op.Status != 0))
                {
                    throw new InvalidOperationException($"pair {p}: a hypercall's operation failed");
                }

                for (int i = 0; i < _ops[p].Length; i++)
                {
                    if (_ops[p][i].Status != 0 || !new ReadOnlySpan<byte>(_src[p][i], _length).SequenceEqual(new ReadOnlySpan<byte>(_dst[p][i], _length)))
                    {
                        throw new InvalidOperationException($"pair {p}, operation {i}: status {_ops[p][i].Status} or bytes differ");
                    }
                }
            }
        }

        public void Dispose() => _memory.Dispose();
    }
}
