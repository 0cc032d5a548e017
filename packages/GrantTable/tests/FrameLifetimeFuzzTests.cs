using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Frame lifetime under copies: seeded random sequences, on one thread, of <c>GNTTABOP_copy</c> calls (through the API
/// in one hold, through the hypercall with and without a preemption hook, and as holds driven one by one with what the
/// batch claimed kept between them) interleaved with everything that frees or moves a frame meanwhile: a granter freeing
/// RAM (decrease_reservation) and populating it again, rewriting its entries behind the hypervisor's back, placing and
/// removing table frames over RAM (add_to_physmap releases the page), switching its table's version, dying; the caller
/// mapping and unmapping grants, freeing its own frames, releasing its mappings; a newcomer taking the freed memory.
/// Granter-side events run between the holds of one call (in the hypercall's preemption hook, or between driven holds),
/// with the call's claims kept. After every operation and every event: every pinned entry, mapping and held claim names
/// a frame still allocated to its granter; every pin count and every frame's reference count is what the holders
/// (mappings, and the claims a call keeps across holds, one reference each, Xen's page reference per claim) account
/// for; a frame whose free is pending is referenced. Every frame freed stays zeroed (the machine scrubs it at the free)
/// until it is handed out again, and the newcomer's frames keep what it wrote. At the end every machine frame is free.
/// Set VMMKIT_GNT_LIFE_SEED=N and VMMKIT_GNT_LIFE_STEPS=M to replay one run.
/// </summary>
public sealed class FrameLifetimeFuzzTests
{
    private const int Steps = 3000;

    public static TheoryData<int> Seeds()
    {
        if (int.TryParse(Environment.GetEnvironmentVariable("VMMKIT_GNT_LIFE_SEED"), out int only))
        {
            return [only];
        }

        return [1, 2, 3, 4, 5, 6];
    }

    private static int StepCount =>
        int.TryParse(Environment.GetEnvironmentVariable("VMMKIT_GNT_LIFE_STEPS"), out int n) ? n : Steps;

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Frames_outlive_every_claim_mapping_and_pin_that_names_them(int seed)
    {
        using var run = new LifetimeRun(seed);
        run.Go(StepCount);
    }

    // Two threads copy (from one granter's grants mostly, so they share its copy word) while this one acts as the
    // granters and the newcomer; checks run with both copiers between holds and the exclusive lock held.
    [Theory]
    [MemberData(nameof(Seeds))]
    public void Frames_outlive_every_claim_while_two_threads_copy(int seed)
    {
        using var run = new LifetimeRun(seed);
        run.GoThreaded(StepCount / 2);
    }
}

/// <summary>One seeded run of <see cref="FrameLifetimeFuzzTests"/>.</summary>
internal sealed unsafe class LifetimeRun : IDisposable
{
    private const ushort GranterG = 1, Caller = 2, GranterH = 3, Newcomer = 9;
    private const int Gfns = 6;                // RAM the fuzzer frees, populates and copies: gfn 0..5
    private const ulong OpsGfn = 20;           // the caller's operation page (never freed, never a copy target)
    private const ulong Window = 0x100;        // the caller maps grants at gfn 0x100..0x107
    private const int Slots = 8;
    private const uint FirstRef = 5, Refs = 6;  // grant references 5..10 (three of them reserved entries)
    private const byte Pattern = 0xA5;         // what the newcomer writes into the frames it takes

    private readonly Random _rng;
    private readonly string _replay;
    private readonly TestMachine _m = new(4UL << 20);
    private readonly ulong _initialFree;
    private readonly Dom _c;
    private readonly Dom[] _granters;     // the live granters: [0] and [2] are replaced by newcomers when they die
    private readonly List<Dom> _all = []; // every domain of the run, dead or alive
    private ushort _nextId = 10;
    private readonly TestDomain _callerVcpu;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly (uint Handle, bool InUse)[] _slots = new (uint, bool)[Slots];
    private readonly HashSet<ulong> _tracked = [];  // every RAM frame a domain of the run ever had
    private readonly List<ulong> _newcomer = [];    // frames the newcomer holds, each filled with Pattern
    private readonly byte* _ram;
    private string _step = "start";
    private bool _ending;
    private bool _fullCheck; // the next CheckAll looks at every active entry

    private sealed class Dom(ushort id, EptTables ept, GrantDomain grant)
    {
        public ushort Id { get; } = id;
        public EptTables Ept { get; } = ept;
        public GrantDomain Grant { get; } = grant;
        public ulong?[] Ram { get; } = new ulong?[32]; // gfn -> machine frame of the domain's RAM there
        public bool Dead { get; set; }
    }

    // A grant a call keeps claimed between holds (or within one): its granter, reference, access and whether the claim
    // holds a frame reference (every claim kept across holds must).
    private readonly record struct Claim(GrantDomain Granter, uint Ref, bool ReadOnly, bool Referenced);

    public LifetimeRun(int seed)
    {
        _rng = new Random(seed);
        _replay = $"seed {seed} (replay: VMMKIT_GNT_LIFE_SEED={seed})";
        _initialFree = _m.Memory.FreeFrames;
        _ram = _m.Memory.GetFramePointer(new MachineFrameNumber(0));
        _c = NewDomain(Caller, Gfns);
        _granters = [NewDomain(GranterG, Gfns), _c, NewDomain(GranterH, Gfns)];
        MapRam(_c, OpsGfn);
        MapRam(_c, OpsGfn + 1);
        _callerVcpu = new TestDomain(Caller, _c.Ept, _c.Grant, [], _m.Memory);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
        foreach (Dom d in _granters)
        {
            GrantAll(d);
        }
    }

    private void GrantAll(Dom d)
    {
        for (uint r = FirstRef; r < FirstRef + Refs; r++)
        {
            RewriteEntry(d, r);
        }
    }

    public void Dispose() => _m.Dispose();

    private Dom NewDomain(ushort id, int gfns)
    {
        var ept = new EptTables(_m.Memory, new FrameOwner(id));
        var d = new Dom(id, ept, _m.Host.CreateDomain(id, ept));
        _all.Add(d);
        for (ulong gfn = 0; gfn < (ulong)gfns; gfn++)
        {
            MapRam(d, gfn);
        }

        return d;
    }

    private void MapRam(Dom d, ulong gfn)
    {
        MachineFrameNumber f = _m.Memory.AllocateFrame(new FrameOwner(d.Id));
        Assert.True(_m.Memory.GetFrame(f).IndexOfAnyExcept((byte)0) < 0, $"{_replay}, {_step}: {f} handed out dirty");
        _m.Memory.GetFrame(f).Fill((byte)(d.Id * 16 + (int)gfn));
        d.Ept.Map(new GuestFrameNumber(gfn).Address, f, 1, EptAccess.ReadWriteExecute);
        GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, d.Ept.Pointer);
        d.Ram[gfn] = f.Value;
        _tracked.Add(f.Value);
    }

    public void Go(int steps)
    {
        for (int s = 0; s < steps; s++)
        {
            _step = $"step {s}";
            if (_rng.Next(3) == 0)
            {
                Event([]);
                CheckAll([]);
            }
            else
            {
                Call();
            }

            if (s % 16 == 0)
            {
                CheckScrubbed();
            }
        }

        Finish();
    }

    // ---- two copying threads ----

    // A thread copying as the caller's vCPUs: API calls and holds driven one by one. What its batch keeps claimed
    // between holds is published under Pub, which it holds at all other times.
    private sealed class Copier(LifetimeRun run, int seed)
    {
        public readonly object Pub = new();
        public List<Claim> Claims = [];
        public Exception? Failure;
        public volatile bool Stop;
        public int Calls;

        public void Run()
        {
            var rng = new Random(seed);
            Monitor.Enter(Pub);
            try
            {
                while (!Stop)
                {
                    var ops = new GnttabCopy[1 + rng.Next(8)];
                    for (int i = 0; i < ops.Length; i++)
                    {
                        ops[i] = i > 0 && rng.Next(2) == 0 ? run.Again(rng, ops[i - 1]) : run.RandomOp(rng);
                    }

                    if (rng.Next(3) == 0)
                    {
                        run._m.Host.Copy(run._c.Grant, ops);
                    }
                    else
                    {
                        Holds(rng, ops);
                    }

                    Calls++;
                }
            }
            catch (Exception e)
            {
                Failure = e;
            }
            finally
            {
                Monitor.Exit(Pub);
            }
        }

        private void Holds(Random rng, GnttabCopy[] ops)
        {
            var batch = default(GrantTableHost.CopyBatch);
            try
            {
                int i = 0;
                while (i < ops.Length)
                {
                    int end = Math.Min(ops.Length, i + 1 + rng.Next(3));
                    run._m.Host.BeginCopyHold(run._c.Grant, ref batch);
                    try
                    {
                        for (; i < end; i++)
                        {
                            run._m.Host.CopyHeld(run._c.Grant, ref ops[i], ref batch);
                        }
                    }
                    finally
                    {
                        run._m.Host.EndCopyHold(ref batch, endsBatch: i == ops.Length);
                    }

                    Claims = run.ClaimsOf(in batch, betweenHolds: true);
                    Monitor.Exit(Pub); // between holds: the checker may look
                    Thread.Yield();
                    Monitor.Enter(Pub);
                }
            }
            finally
            {
                run._m.Host.EndCopyBatch(ref batch);
                Claims = [];
            }
        }
    }

    private bool _threaded;

    public void GoThreaded(int steps)
    {
        _threaded = true;
        Copier[] copiers = [new(this, _rng.Next()), new(this, _rng.Next())];
        Thread[] threads = [.. copiers.Select(c => new Thread(c.Run) { IsBackground = true })];
        foreach (Thread t in threads)
        {
            t.Start();
        }

        try
        {
            for (int s = 0; s < steps && copiers.All(c => c.Failure is null); s++)
            {
                _step = $"step {s}";
                Event(Quiesced(copiers, claims => claims));
                Quiesced(copiers, claims =>
                {
                    CheckAll(claims);
                    if (s % 16 == 0)
                    {
                        CheckScrubbed();
                    }

                    return claims;
                });
            }
        }
        finally
        {
            foreach (Copier c in copiers)
            {
                c.Stop = true;
            }

            foreach (Thread t in threads)
            {
                Assert.True(t.Join(TimeSpan.FromMinutes(2)), $"{_replay}: a copier did not stop");
            }
        }

        foreach (Copier c in copiers)
        {
            Assert.True(c.Failure is null, $"{_replay}: a copier failed: {c.Failure}");
            Assert.True(c.Calls > 0, $"{_replay}: a copier made no call");
        }

        _threaded = false;
        Finish();
    }

    // Runs `look` with every copier between holds (its published claims current) and the exclusive lock held.
    private List<Claim> Quiesced(Copier[] copiers, Func<List<Claim>, List<Claim>> look)
    {
        foreach (Copier c in copiers)
        {
            Monitor.Enter(c.Pub);
        }

        try
        {
            using (_m.Host.Exclusive())
            {
                return look([.. copiers.SelectMany(c => c.Claims)]);
            }
        }
        finally
        {
            foreach (Copier c in copiers)
            {
                Monitor.Exit(c.Pub);
            }
        }
    }

    // The EPT and frame changes a hypervisor makes for its guests, under the exclusive lock when copies run on other
    // threads (GrantTableHost.Exclusion.cs: EPT entries change and frames are freed under it).
    private GuestScope Guest()
    {
        if (!_threaded)
        {
            return new GuestScope(null);
        }

        _m.Host.EnterExclusive();
        return new GuestScope(_m.Host);
    }

    private readonly ref struct GuestScope(GrantTableHost? host)
    {
        public void Dispose() => host?.ExitExclusive();
    }

    // ---- copy calls ----

    private void Call()
    {
        var ops = new GnttabCopy[1 + _rng.Next(8)];
        for (int i = 0; i < ops.Length; i++)
        {
            ops[i] = i > 0 && _rng.Next(2) == 0 ? Again(_rng, ops[i - 1]) : RandomOp(_rng);
        }

        switch (_rng.Next(4))
        {
            case 0:
                _step += " api";
                _m.Host.Copy(_c.Grant, ops);
                break;
            case 1:
                _step += " hypercall";
                _dispatcher.PreemptCheck = null;
                CopyHypercall.Invoke(_dispatcher, _callerVcpu, ops);
                break;
            case 2:
                _step += " hypercall+hook";
                HypercallWithHook(ops);
                break;
            default:
                _step += " holds";
                DrivenHolds(ops);
                break;
        }

        CheckAll([]);
    }

    // The hypercall with a preemption hook: one operation per hold, granter-side events in the hook, with the claims
    // of the operation before kept (it succeeded: both its gref sides; it failed: nothing).
    private void HypercallWithHook(GnttabCopy[] ops)
    {
        int next = 1;
        _dispatcher.PreemptCheck = _ =>
        {
            int ran = next++ - 1;
            short status = GuestValues.Get<short>(_callerVcpu, CopyHypercall.Buffer + (ulong)(ran * CopyHypercall.OpSize) + 36);
            List<Claim> held = status == 0 ? ClaimsOf(ops[ran]) : [];
            CheckAll(held);
            for (int e = _rng.Next(3); e > 0; e--)
            {
                Event(held);
                CheckAll(held);
            }

            return false;
        };
        try
        {
            CopyHypercall.Invoke(_dispatcher, _callerVcpu, ops);
        }
        finally
        {
            _dispatcher.PreemptCheck = null;
        }
    }

    // The gref sides an operation that succeeded keeps claimed across the hold's end, each with a reference.
    private List<Claim> ClaimsOf(in GnttabCopy op)
    {
        var claims = new List<Claim>();
        if ((op.Flags & (ushort)GrantCopyFlags.SourceGref) != 0)
        {
            claims.Add(new Claim(DomainOf(op.Source.DomId)!.Grant, op.Source.Ref, ReadOnly: true, Referenced: true));
        }

        if ((op.Flags & (ushort)GrantCopyFlags.DestGref) != 0)
        {
            claims.Add(new Claim(DomainOf(op.Dest.DomId)!.Grant, op.Dest.Ref, ReadOnly: false, Referenced: true));
        }

        return claims;
    }

    private Dom? DomainOf(ushort domid) =>
        domid == DomainId.Self ? _c : Array.Find(_granters, d => d.Id == domid && !d.Dead);

    // Holds driven as the hypercall drives them, with 1 to 3 operations each and events between them.
    private void DrivenHolds(GnttabCopy[] ops)
    {
        var batch = default(GrantTableHost.CopyBatch);
        try
        {
            int i = 0;
            while (i < ops.Length)
            {
                int end = Math.Min(ops.Length, i + 1 + _rng.Next(3));
                _m.Host.BeginCopyHold(_c.Grant, ref batch);
                try
                {
                    for (; i < end; i++)
                    {
                        _m.Host.CopyHeld(_c.Grant, ref ops[i], ref batch);
                        CheckAll(ClaimsOf(in batch, betweenHolds: false));
                    }
                }
                finally
                {
                    _m.Host.EndCopyHold(ref batch, endsBatch: i == ops.Length);
                }

                CheckAll(ClaimsOf(in batch, betweenHolds: true));
                if (i < ops.Length)
                {
                    for (int e = _rng.Next(3); e > 0; e--)
                    {
                        Event(ClaimsOf(in batch, betweenHolds: true));
                        CheckAll(ClaimsOf(in batch, betweenHolds: true));
                    }
                }
            }
        }
        finally
        {
            _m.Host.EndCopyBatch(ref batch);
        }
    }

    private List<Claim> ClaimsOf(in GrantTableHost.CopyBatch batch, bool betweenHolds)
    {
        var claims = new List<Claim>();
        foreach (GrantTableHost.CopyBuffer buf in (ReadOnlySpan<GrantTableHost.CopyBuffer>)[batch.Src, batch.Dst])
        {
            if (buf.HaveGrant)
            {
                Assert.True(!betweenHolds || buf.Referenced, $"{_replay}, {_step}: a claim kept across holds has no frame reference");
                claims.Add(new Claim(buf.Domain!, buf.Ref, buf.ReadOnly, buf.Referenced));
                ulong virtFrame = (ulong)(buf.Virt - _ram) >> Page.PageShift;
                Assert.True(buf.Virt == null || virtFrame == buf.Domain!.Active[buf.Ref].Mfn,
                    $"{_replay}, {_step}: a claim copies from another frame than its entry's pin");
            }
            else if (buf.Virt != null && buf.Epoch == _m.Frames.Epoch && !betweenHolds)
            {
                // A frame of the caller the batch may still use: allocated to the caller.
                ulong f = (ulong)(buf.Virt - _ram) >> Page.PageShift;
                Assert.True(_m.Memory.TryGetOwner(new MachineFrameNumber(f), out FrameOwner o) && o.DomainId == Caller,
                    $"{_replay}, {_step}: the batch holds caller frame {f}, which is no longer the caller's");
            }
        }

        return claims;
    }

    private GnttabCopy RandomOp(Random rng)
    {
        bool srcGref = rng.Next(3) != 0, dstGref = rng.Next(3) == 0;
        var op = new GnttabCopy
        {
            Flags = (ushort)((srcGref ? GrantCopyFlags.SourceGref : 0) | (dstGref ? GrantCopyFlags.DestGref : 0)),
        };
        op.Source = srcGref ? GrefSide(rng) : FrameSide(rng);
        op.Dest = dstGref ? (srcGref && rng.Next(3) == 0 ? op.Source : GrefSide(rng)) : FrameSide(rng);
        Lengths(rng, ref op);
        return op;
    }

    // The same sides as the operation before (what a batch keeps claimed), other bytes.
    private GnttabCopy Again(Random rng, GnttabCopy prev)
    {
        GnttabCopy op = prev;
        op.Status = 0;
        Lengths(rng, ref op);
        return op;
    }

    private static void Lengths(Random rng, ref GnttabCopy op)
    {
        int len = rng.Next(6) switch { 0 => 0, 1 => 1, 2 => 16, 3 => 512, 4 => 4096, _ => rng.Next(4097) };
        op.Len = (ushort)len;
        op.Source.Offset = (ushort)(rng.Next(16) == 0 ? rng.Next(4096) : rng.Next(4097 - len));
        op.Dest.Offset = (ushort)(rng.Next(16) == 0 ? rng.Next(4096) : rng.Next(4097 - len));
    }

    private GnttabCopyPtr GrefSide(Random rng)
    {
        Dom d = rng.Next(10) switch { < 5 => _granters[0], < 7 => _c, _ => _granters[2] };
        ushort domid = d == _c && rng.Next(2) == 0 ? DomainId.Self : d.Id;
        uint gref = rng.Next(24) == 0 ? (uint)rng.Next(1024) : FirstRef + (uint)rng.Next((int)Refs);
        return new GnttabCopyPtr { Ref = gref, DomId = rng.Next(40) == 0 ? (ushort)7 : domid };
    }

    private static GnttabCopyPtr FrameSide(Random rng)
    {
        ulong gfn = rng.Next(12) == 0 ? Window + (ulong)rng.Next(Slots) : (ulong)rng.Next(Gfns);
        return new GnttabCopyPtr { Gmfn = gfn, DomId = rng.Next(40) == 0 ? Caller : DomainId.Self };
    }

    // ---- events ----

    private void Event(List<Claim> held)
    {
        if (held.Count > 0 && _rng.Next(2) == 0)
        {
            AtClaim(held[_rng.Next(held.Count)]);
            return;
        }

        Dom d = _granters[_rng.Next(_granters.Length)];
        if (d.Dead)
        {
            return;
        }

        int what = _rng.Next(100);
        if (what < 20)
        {
            RewriteEntry(d, FirstRef + (uint)_rng.Next((int)Refs));
        }
        else if (what < 32)
        {
            FreeRam(d, (ulong)_rng.Next(Gfns));
        }
        else if (what < 52)
        {
            int[] empty = [.. Enumerable.Range(0, Gfns).Where(g => d.Ram[g] is null && !d.Grant.TableGfns.ContainsKey((ulong)g))];
            if (empty.Length > 0)
            {
                Populate(d, (ulong)empty[_rng.Next(empty.Length)]);
            }
        }
        else if (what < 64)
        {
            MapGrant();
        }
        else if (what < 74)
        {
            UnmapSlot(_rng.Next(Slots));
        }
        else if (what < 79)
        {
            PlaceTableFrame(d);
        }
        else if (what < 85)
        {
            RemoveTableFrame(d);
        }
        else if (what < 90)
        {
            SetVersion(d);
        }
        else if (what < 96)
        {
            NewcomerTurn();
        }
        else if (what < 98)
        {
            _step += " release-mappings";
            _m.Host.ReleaseMappings(_c.Grant);
            Array.Clear(_slots);
        }
        else if (d != _c && _rng.Next(2) == 0)
        {
            Kill(d);
        }
    }

    // An event aimed at what a call holds: the granter frees the claimed frame (then, mostly, points the entry at
    // another page), places a table frame over it, maps the grant too, switches version or dies.
    private void AtClaim(Claim claim)
    {
        Dom d = _all.Find(x => x.Grant == claim.Granter)!;
        if (d.Dead)
        {
            return;
        }

        ulong mfn = claim.Granter.Active[claim.Ref].Mfn;
        int gfn = Array.FindIndex(d.Ram, f => f == mfn);
        switch (_rng.Next(10))
        {
            case < 4:
                if (gfn >= 0)
                {
                    FreeRam(d, (ulong)gfn);
                }

                if (_rng.Next(4) != 0)
                {
                    RewriteEntry(d, claim.Ref);
                }

                break;
            case 4:
                RewriteEntry(d, claim.Ref);
                break;
            case 5:
                if (gfn >= 0)
                {
                    long rc = _m.Host.AddToPhysmap(d.Grant, (ulong)_rng.Next(2), new GuestFrameNumber((ulong)gfn));
                    _step += $" table d{d.Id}@{gfn}->{rc}";
                    if (rc == 0)
                    {
                        d.Ram[gfn] = null;
                    }
                }

                break;
            case 6:
                MapGrant(d, claim.Ref);
                break;
            case 7:
                SetVersion(d);
                break;
            case 8:
                NewcomerTurn();
                break;
            default:
                if (d != _c && _rng.Next(3) == 0)
                {
                    Kill(d);
                }

                break;
        }
    }

    // A hostile granter rewrites an entry whatever it is doing (GTF_reading/GTF_writing of a v1 entry are kept, the
    // hypervisor's to change): permit access to the caller (read-only or not, sub-page under v2) of a gfn that may
    // hold RAM, a table frame or nothing; or another domain; or nothing.
    private void RewriteEntry(Dom d, uint gref)
    {
        ushort type = _rng.Next(10) switch { 0 => 0, 1 => 3, _ => 1 };
        ushort flags = (ushort)(type | (_rng.Next(3) == 0 ? (ushort)GrantEntryFlags.ReadOnly : 0));
        ushort domid = _rng.Next(12) == 0 ? GranterG : Caller;
        uint gfn = (uint)_rng.Next(Gfns);
        byte* shared = _m.Memory.GetFramePointer(d.Grant.GetSharedFrame(0));
        if (d.Grant.Version == 1)
        {
            var e = (GrantEntryV1*)shared + gref;
            Volatile.Write(ref e->Frame, gfn);
            uint* header = (uint*)e;
            uint old, now;
            do
            {
                old = Volatile.Read(ref *header);
                now = (old & (uint)(GrantEntryFlags.Reading | GrantEntryFlags.Writing)) | flags | ((uint)domid << 16);
            }
            while (Interlocked.CompareExchange(ref *header, now, old) != old);
        }
        else
        {
            var e = (GrantEntryV2*)shared + gref;
            if (_rng.Next(3) == 0)
            {
                flags |= (ushort)GrantEntryFlags.SubPage;
                Volatile.Write(ref e->SubPageOffset, (ushort)_rng.Next(4096));
                Volatile.Write(ref e->SubPageLength, (ushort)_rng.Next(4097));
            }

            Volatile.Write(ref e->Frame, gfn);
            Volatile.Write(ref *(uint*)e, flags | ((uint)domid << 16));
        }
    }

    // decrease_reservation: the page leaves the EPT, then it is freed through the reference counts.
    private void FreeRam(Dom d, ulong gfn)
    {
        if (d.Ram[gfn] is not { } f)
        {
            return;
        }

        _step += $" free d{d.Id}:{gfn}";
        using (Guest())
        {
            d.Ept.Unmap(new GuestFrameNumber(gfn).Address, 1);
            GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, d.Ept.Pointer);
            _m.Frames.Free(new MachineFrameNumber(f));
        }

        d.Ram[gfn] = null;
    }

    private void Populate(Dom d, ulong gfn)
    {
        if (d.Ram[gfn] is not null || d.Grant.TableGfns.ContainsKey(gfn) || _m.Memory.FreeFrames < 64)
        {
            return;
        }

        _step += $" populate d{d.Id}:{gfn}";
        using (Guest())
        {
            MapRam(d, gfn);
        }
    }

    private void MapGrant() =>
        MapGrant(_granters[_rng.Next(_granters.Length)], FirstRef + (uint)_rng.Next((int)Refs));

    private void MapGrant(Dom d, uint gref)
    {
        int s = _rng.Next(Slots);
        if (_slots[s].InUse)
        {
            return;
        }

        bool readOnly = _rng.Next(2) == 0;
        var op = new GnttabMapGrantRef
        {
            HostAddr = (Window + (ulong)s) << Page.PageShift,
            Flags = (uint)(GrantMapFlags.HostMap | (readOnly ? GrantMapFlags.ReadOnly : 0)),
            Ref = gref,
            Dom = d.Id,
        };
        _m.Host.MapGrantRef(_c.Grant, ref op);
        _step += $" map d{d.Id}:{op.Ref}->{op.Status}";
        if (op.Status == 0)
        {
            _slots[s] = (op.Handle, true);
        }
    }

    private void UnmapSlot(int s)
    {
        if (!_slots[s].InUse)
        {
            return;
        }

        var op = new GnttabUnmapGrantRef { HostAddr = (Window + (ulong)s) << Page.PageShift, Handle = _slots[s].Handle };
        _m.Host.UnmapGrantRef(_c.Grant, ref op);
        Assert.Equal(0, op.Status);
        _step += $" unmap {s}";
        _slots[s] = default;
    }

    // XENMAPSPACE_grant_table over one of the domain's RAM gfns: the RAM page there is released.
    private void PlaceTableFrame(Dom d)
    {
        ulong gfn = (ulong)_rng.Next(Gfns);
        ulong index = d.Grant.Version == 2 && _rng.Next(3) == 0 ? GrantTableHost.GrantTableStatusIndex : (ulong)_rng.Next(2);
        long rc = _m.Host.AddToPhysmap(d.Grant, index, new GuestFrameNumber(gfn));
        _step += $" table d{d.Id}:{index:x}@{gfn}->{rc}";
        if (rc == 0)
        {
            d.Ram[gfn] = null; // the host freed the page that was there
        }
    }

    private void RemoveTableFrame(Dom d)
    {
        ulong[] tables = [.. d.Grant.TableGfns.Keys];
        ulong gfn = tables.Length > 0 && _rng.Next(4) != 0 ? tables[_rng.Next(tables.Length)] : (ulong)_rng.Next(Gfns);
        long rc = _m.Host.RemoveTableFrame(d.Grant, new GuestFrameNumber(gfn));
        _step += $" untable d{d.Id}@{gfn}->{rc}";
    }

    private void SetVersion(Dom d)
    {
        var op = new GnttabSetVersion { Version = (uint)(3 - d.Grant.Version) };
        long rc = _m.Host.SetVersion(d.Grant, ref op);
        _step += $" set_version d{d.Id} v{3 - d.Grant.Version}->{rc}";
        if (rc == 0)
        {
            for (uint r = ReservedEntriesEnd; r < FirstRef + Refs; r++)
            {
                RewriteEntry(d, r); // the switch cleared every entry past the reserved ones
            }
        }
    }

    private const uint ReservedEntriesEnd = 8;

    // The newcomer takes a frame some domain of the run freed (allocating until the machine hands it out) and writes
    // it, or gives one back.
    private void NewcomerTurn()
    {
        if (_newcomer.Count > 12 || (_newcomer.Count > 0 && _rng.Next(3) == 0))
        {
            int i = _rng.Next(_newcomer.Count);
            _m.Frames.Free(new MachineFrameNumber(_newcomer[i]));
            _newcomer.RemoveAt(i);
            return;
        }

        ulong[] free = [.. _tracked.Where(f => !_m.Memory.TryGetOwner(new MachineFrameNumber(f), out _))];
        if (free.Length == 0)
        {
            return;
        }

        ulong wanted = free[_rng.Next(free.Length)];
        var others = new List<MachineFrameNumber>();
        var owner = new FrameOwner(Newcomer);
        while (_m.Memory.TryAllocateFrame(owner, out MachineFrameNumber f))
        {
            if (f.Value == wanted)
            {
                Assert.True(_m.Memory.GetFrame(f).IndexOfAnyExcept((byte)0) < 0, $"{_replay}, {_step}: {f} handed out dirty");
                _m.Memory.GetFrame(f).Fill(Pattern);
                _newcomer.Add(f.Value);
                break;
            }

            others.Add(f);
        }

        foreach (MachineFrameNumber f in others)
        {
            _m.Memory.FreeFrame(f);
        }

        _step += $" newcomer {wanted}";
    }

    private void Kill(Dom d)
    {
        _step += $" kill d{d.Id}";
        using GuestScope scope = Guest();
        _m.Host.DestroyDomain(d.Grant);
        for (int gfn = 0; gfn < d.Ram.Length; gfn++)
        {
            if (d.Ram[gfn] is { } f)
            {
                _m.Frames.Free(new MachineFrameNumber(f));
                d.Ram[gfn] = null;
            }
        }

        d.Ept.Dispose();
        d.Dead = true;
        int slot = Array.IndexOf(_granters, d);
        if (slot >= 0 && d != _c && !_ending)
        {
            _granters[slot] = NewDomain(_nextId++, Gfns); // a new granter, under a new id (the dead one's may stay taken)
            GrantAll(_granters[slot]);
        }
    }

    private void Finish()
    {
        _step = "end";
        _ending = true;
        for (int s = 0; s < Slots; s++)
        {
            UnmapSlot(s);
        }

        CheckAll([]);
        Assert.True(_m.Frames.PendingFreeCount == 0, $"{_replay}: frames still pending with no holder");
        foreach (Dom d in _all)
        {
            if (!d.Dead)
            {
                Kill(d);
            }
        }

        _callerVcpu.Dead = true;
        foreach (ulong f in _newcomer)
        {
            _m.Frames.Free(new MachineFrameNumber(f));
        }

        CheckScrubbed();
        Assert.Equal(0, _m.Frames.PendingFreeCount);
        Assert.True(_m.Memory.FreeFrames == _initialFree, $"{_replay}: {_initialFree - _m.Memory.FreeFrames} frame(s) still allocated");
    }

    // ---- checks ----

    // Pins, references and allocation against the holders: the caller's mappings and the claims a call holds.
    private void CheckAll(List<Claim> claims)
    {
        var pins = new Dictionary<(GrantDomain, uint), uint>();
        var refs = new Dictionary<ulong, int>();
        GrantDomain c = _c.Grant;
        for (int h = 0; h < c.Maptrack.Length; h++)
        {
            MaptrackEntry map = c.Maptrack[h];
            if ((map.Flags & GrantMapFlags.HostMap) == 0)
            {
                continue;
            }

            bool readOnly = (map.Flags & GrantMapFlags.ReadOnly) != 0;
            Add(pins, (map.Granter!, map.Ref), readOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement);
            refs[map.Mfn] = refs.GetValueOrDefault(map.Mfn) + 1;
            Assert.True(map.Mfn == map.Granter!.Active[map.Ref].Mfn, $"{_replay}, {_step}: a mapping names another frame than its pin");
        }

        foreach (Claim claim in claims)
        {
            Add(pins, (claim.Granter, claim.Ref), claim.ReadOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement);
            if (claim.Referenced)
            {
                ulong mfn = claim.Granter.Active[claim.Ref].Mfn;
                refs[mfn] = refs.GetValueOrDefault(mfn) + 1;
            }
        }

        bool full = _fullCheck;
        _fullCheck = false;
        foreach (Dom d in _all)
        {
            GrantDomain g = d.Grant;
            // The entries the run grants (past them every entry is zero, so never pinned), and all of them now and then.
            uint entries = full ? (uint)g.Active.Length : Math.Min((uint)g.Active.Length, FirstRef + Refs);
            for (uint r = 0; r < entries; r++)
            {
                uint pin = g.Active[r].Pin;
                Assert.True(pin == pins.GetValueOrDefault((g, r)),
                    $"{_replay}, {_step}: d{d.Id} ref {r} pinned 0x{pin:x}, its holders account for 0x{pins.GetValueOrDefault((g, r)):x}");
                if (pin != 0)
                {
                    var f = new MachineFrameNumber(g.Active[r].Mfn);
                    Assert.True(_m.Memory.TryGetOwner(f, out FrameOwner o) && o.DomainId == d.Id,
                        $"{_replay}, {_step}: d{d.Id} ref {r} is pinned on {f}, which is no longer the granter's");
                }
            }
        }

        foreach (ulong f in _tracked)
        {
            var frame = new MachineFrameNumber(f);
            int want = refs.GetValueOrDefault(f);
            Assert.True(_m.Frames.ReferenceCount(frame) == want,
                $"{_replay}, {_step}: {frame} has {_m.Frames.ReferenceCount(frame)} reference(s), its holders {want}");
            Assert.True(!_m.Frames.IsFreePending(frame) || want > 0, $"{_replay}, {_step}: {frame} pending with no holder");
        }

        foreach (ulong f in _newcomer)
        {
            Assert.True(_m.Memory.GetFrame(new MachineFrameNumber(f)).IndexOfAnyExcept(Pattern) < 0,
                $"{_replay}, {_step}: the newcomer's frame {f} was written");
        }
    }

    private static void Add(Dictionary<(GrantDomain, uint), uint> pins, (GrantDomain, uint) key, uint increment) =>
        pins[key] = pins.GetValueOrDefault(key) + increment;

    // Every frame of the run that is free now was scrubbed at its free and not written since.
    private void CheckScrubbed()
    {
        _fullCheck = true;
        foreach (ulong f in _tracked)
        {
            var frame = new MachineFrameNumber(f);
            if (!_m.Memory.TryGetOwner(frame, out _))
            {
                Assert.True(_m.Memory.GetFrame(frame).IndexOfAnyExcept((byte)0) < 0, $"{_replay}, {_step}: free {frame} was written");
            }
        }
    }
}
