using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;
using Xunit.Abstractions;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A seeded fuzzer of <c>__HYPERVISOR_grant_table_op</c> and <c>XENMAPSPACE_grant_table</c> from a hostile guest
/// (the attacker, domain 1), with arguments built from values that hurt: references around the
/// victim's grants and past the table, domids of every domain and of none, <c>host_addr</c>s over RAM, the table,
/// unmapped space and other mappings, handles returned earlier and made up, flags of every combination, offsets and
/// lengths at and past the page's edges, operation arrays that straddle into unmapped space or lie in a read-only grant
/// mapping, counts up to 2^32, both ABIs, continuations at random points, the attacker's own table and status words
/// rewritten between calls (grants of its RAM and of the frames it maps from the victim to the backend, and junk), and
/// its table frames placed and removed and RAM pages removed (some while the backend maps them). The victim (domain 2)
/// grants frames to the attacker (read-only, writable, a v2 sub-page, a transitive entry) and to the backend (domain
/// 3); the backend maps and copies whatever the attacker grants it (into its frames 32..63), between the attacker's
/// calls or on a thread of its own. One test makes the attacker a control domain (privileged).
/// After every call: the result is 0 or a Xen errno; every frame the attacker's EPT maps at an address it has named is its
/// own, its own table's, or one granted to it with no more access than granted, and every frame the backend maps is the
/// attacker's own. Every 32 calls and at the end: no byte of the victim or the backend changed except where write
/// access was granted (and the backend's own copy destinations and operations), and the victim's table entries still
/// say what the victim wrote. In half the runs the victim dies halfway with its frames mapped, and a newcomer (domain
/// 4) takes the free memory: the mapped frames stay the victim's and nothing writes the newcomer's. When the attacker
/// dies, no grant of a living victim stays pinned, and when all have died every machine frame is free again. Set
/// VMMKIT_GNT_FUZZ_SEED=N, VMMKIT_GNT_FUZZ_VERSION=1 or 2 (the victim's table version) and VMMKIT_GNT_FUZZ_STEPS to
/// replay one run.
/// </summary>
public sealed class HypercallFuzzTests(ITestOutputHelper output)
{
    private const int Steps = 6000;
    private const ushort Attacker = 1, Victim = 2, Backend = 3;
    private const ulong Buffer = 20UL << 12;   // the operation pages: gfn 20..23 (the backend uses gfn 20 of its own)
    private const ulong Slot0 = 0x100;         // where the attacker mostly maps grants: gfn 0x100..0x10f
    private const int Slots = 16;
    private const int ReadOnlyA = 10, ReadOnlyB = 11, WritableA = 12, WritableB = 13, SubPageFrame = 16;
    private const int SubPageOffset = 256, SubPageLength = 512;

    public static TheoryData<int, int> Seeds()
    {
        var data = new TheoryData<int, int>();
        if (int.TryParse(Environment.GetEnvironmentVariable("VMMKIT_GNT_FUZZ_SEED"), out int only))
        {
            bool one = int.TryParse(Environment.GetEnvironmentVariable("VMMKIT_GNT_FUZZ_VERSION"), out int version);
            for (int v = 1; v <= 2; v++)
            {
                if (!one || v == version)
                {
                    data.Add(only, v);
                }
            }

            return data;
        }

        foreach (int seed in new[] { 1, 2, 3, 4 })
        {
            data.Add(seed, 1);
            data.Add(seed, 2);
        }

        return data;
    }

    // Two runs, or the one VMMKIT_GNT_FUZZ_SEED asks for.
    public static TheoryData<int, int> FewSeeds() =>
        Environment.GetEnvironmentVariable("VMMKIT_GNT_FUZZ_SEED") is { Length: > 0 } ? Seeds() : new TheoryData<int, int> { { 1, 1 }, { 2, 2 } };

    private static int StepCount =>
        int.TryParse(Environment.GetEnvironmentVariable("VMMKIT_GNT_FUZZ_STEPS"), out int n) ? n : Steps;

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Random_grant_table_calls_of_a_hostile_guest_stay_within_what_was_granted(int seed, int victimVersion)
    {
        var run = new Run(seed, victimVersion);
        run.Go(StepCount);
        Reached(run, seed);
    }

    [Theory]
    [MemberData(nameof(FewSeeds))]
    public void The_same_calls_with_the_backend_on_its_own_thread_stay_within_what_was_granted(int seed, int victimVersion)
    {
        var run = new Run(seed, victimVersion, concurrent: true);
        run.GoConcurrently(StepCount);
        Reached(run, seed);
    }

    [Theory]
    [MemberData(nameof(FewSeeds))]
    public void The_same_calls_from_a_privileged_attacker_stay_within_what_was_granted(int seed, int victimVersion)
    {
        var run = new Run(seed, victimVersion, privileged: true);
        run.Go(StepCount);
        Reached(run, seed);
    }

    // A fuzzer whose calls all fail tests nothing: each run must have mapped and copied through grants.
    private void Reached(Run run, int seed)
    {
        string done = $"maps {run.MapsDone}, grant copies {run.GrantCopiesDone}, backend maps and copies {run.BackendOpsDone}, " +
            $"victim's frames still mapped at its death {run.VictimFramesMappedAtDeath?.ToString() ?? "(the victim lived)"}, " +
            $"attacker's pages removed while mapped {run.FreesDeferred}";
        output.WriteLine(done);
        Assert.True(run.MapsDone > 0 && run.GrantCopiesDone > 0 && run.BackendOpsDone > 0,
            $"seed {seed}: the fuzzer no longer reaches the grant paths ({done})");
    }

    private sealed unsafe class Run
    {
        private readonly Random _rng;
        private readonly Random _backendRng;
        private readonly bool _concurrent;
        private readonly string _replay;
        private readonly ulong _initialFree;
        private readonly TestMachine _m = new(16UL << 20);
        private readonly TestDomain _a, _v, _b;
        private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
        private readonly List<uint> _victimRefsToA = [], _victimRefsToB = [];
        private readonly Dictionary<ulong, EptAccess> _grantedToA = [];  // the victim's mfn -> most access granted
        private readonly HashSet<ulong> _named = [];                     // every gfn the attacker named as an address
        private readonly List<uint> _handles = [];
        private readonly List<(uint Handle, ulong Addr)> _backendHandles = [];
        private readonly byte[][] _victimBefore = new byte[TestMachine.RamFrames][];
        private readonly byte[][] _backendBefore = new byte[TestMachine.RamFrames][];
        private readonly List<(uint Ref, ulong Header, ulong Tail)> _victimEntries = [];
        private int _step;
        private double _preempt;
        private TestDomain? _newcomer;

        public int MapsDone { get; private set; }

        public int GrantCopiesDone { get; private set; }

        public int BackendOpsDone { get; private set; }

        public int? VictimFramesMappedAtDeath { get; private set; }

        public int FreesDeferred { get; private set; }

        public Run(int seed, int victimVersion, bool concurrent = false, bool privileged = false)
        {
            _concurrent = concurrent;
            _rng = new Random(seed * 2 + victimVersion);
            _backendRng = new Random(~seed);
            _replay = $"seed {seed}, victim v{victimVersion} (replay: VMMKIT_GNT_FUZZ_SEED={seed} VMMKIT_GNT_FUZZ_VERSION={victimVersion})";
            _initialFree = _m.Memory.FreeFrames;
            _a = _m.AddDomain(Attacker, new GrantTableLimits(4, 1));
            _v = _m.AddDomain(Victim);
            _b = _m.AddDomain(Backend);
            // A privileged attacker (a control domain) reaches other domains' tables with setup_table, query_size and
            // get_version, which must not give it any more access to their frames.
            new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver(caller => privileged && caller.Id == Attacker)).Register(_dispatcher);
            for (ulong g = 0; g < 0x200; g++)
            {
                _named.Add(g);
            }

            if (victimVersion == 2)
            {
                GuestValues.Put(_v, Buffer, new GnttabSetVersion { Version = 2 });
                Assert.Equal(0, Call(_v, GrantTableOp.SetVersion, Buffer, 1, HypercallAbi.Native64));
            }

            var victim = new InProcessGrantShare(_m.Host, _v.Grant);
            var backend = new InProcessGrantShare(_m.Host, _b.Grant);
            foreach ((int gfn, bool ro) in new[] { (ReadOnlyA, true), (ReadOnlyB, true), (WritableA, false), (WritableB, false) })
            {
                Assert.True(victim.TryGrantForeignAccess(Attacker, (ulong)gfn, ro, out uint gref));
                _victimRefsToA.Add(gref);
                _grantedToA[_v.Ram[gfn].Value] = ro ? EptAccess.Read : EptAccess.Read | EptAccess.Write;
            }

            // The same writable frame twice, and one frame read-only to the attacker and writable to the backend.
            Assert.True(victim.TryGrantForeignAccess(Attacker, WritableA, false, out uint again));
            _victimRefsToA.Add(again);
            for (int gfn = 14; gfn <= 15; gfn++)
            {
                Assert.True(victim.TryGrantForeignAccess(Backend, (ulong)gfn, false, out uint gref));
                _victimRefsToB.Add(gref);
            }

            Assert.True(victim.TryGrantForeignAccess(Backend, ReadOnlyA, false, out uint shared));
            _victimRefsToB.Add(shared);

            // The backend lets the victim read its frame 5; the victim passes it on transitively (refused by us).
            Assert.True(backend.TryGrantForeignAccess(Victim, 5, true, out uint onwards));
            if (victimVersion == 2)
            {
                AddV2Entry(60, e =>
                {
                    e->Flags = (ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.SubPage);
                    e->DomId = Attacker;
                    e->SubPageOffset = SubPageOffset;
                    e->SubPageLength = SubPageLength;
                    e->Frame = (ulong)SubPageFrame;
                });
                AddV2Entry(61, e =>
                {
                    e->Flags = (ushort)GrantEntryFlags.Transitive;
                    e->DomId = Attacker;
                    e->TransDomId = Backend;
                    e->TransGref = onwards;
                });
            }

            for (uint r = 0; r < (uint)_v.Grant.EntryCount; r++)
            {
                _victimEntries.Add((r, VictimEntryHeader(r), VictimEntryRest(r)));
            }

            for (int i = 0; i < TestMachine.RamFrames; i++)
            {
                _victimBefore[i] = _v.RamPage(i).ToArray();
                _backendBefore[i] = _b.RamPage(i).ToArray();
                _a.RamPage(i).Fill((byte)i);
            }

            _m.Host.FlushTranslations = _ => { };
            _dispatcher.PreemptCheck = _ => _concurrent ? Random.Shared.Next(8) == 0 : _rng.NextDouble() < _preempt;
        }

        private unsafe delegate void EntryWriter(GrantEntryV2* e);

        private unsafe void AddV2Entry(uint gref, EntryWriter write)
        {
            var e = (GrantEntryV2*)(_m.Memory.GetFramePointer(_v.Grant.GetSharedFrame((int)(gref / GrantEntryV2.PerFrame)))
                + (gref % GrantEntryV2.PerFrame * GrantEntryV2.Size));
            write(e);
            _victimRefsToA.Add(gref);
        }

        public void Go(int steps)
        {
            try
            {
                int death = _rng.Next(2) == 0 ? -1 : _rng.Next(steps / 3, (2 * steps / 3) + 1);
                for (_step = 0; _step < steps; _step++)
                {
                    if (_step == death)
                    {
                        KillVictim();
                    }

                    Step();
                    CheckAttackerMappings();
                    CheckBackendMappings();
                    if (_step % 32 == 31)
                    {
                        CheckVictimAndBackend();
                    }
                }

                CheckVictimAndBackend();
                CheckDeaths();
            }
            finally
            {
                _m.Dispose();
            }
        }

        // The backend on a thread of its own, as a vCPU of another domain, and a second vCPU of the attacker rewriting its
        // table on a third: the backend's claims and maps, and the attacker's own (of grants to itself), race with the
        // attacker's calls and with the rewriting of the entries they are claiming.
        public void GoConcurrently(int steps)
        {
            try
            {
                Exception? raceFailure = null;
                bool stop = false;
                int backendSteps = 0;
                var backend = new Thread(() =>
                {
                    try
                    {
                        while (!Volatile.Read(ref stop))
                        {
                            BackendStep(_backendRng);
                            CheckBackendMappings();
                            Interlocked.Increment(ref backendSteps);
                        }
                    }
                    catch (Exception e)
                    {
                        raceFailure = e;
                    }
                });
                int scribblerSeed = _rng.Next();
                var scribbler = new Thread(() =>
                {
                    var rng = new Random(scribblerSeed);
                    try
                    {
                        for (int n = 1; !Volatile.Read(ref stop); n++)
                        {
                            ScribbleOwnTable(rng, statusToo: false);
                            if (n % 64 == 0)
                            {
                                Thread.Sleep(1); // bursts: racing, without taking a core from the rest of the suite
                            }
                        }
                    }
                    catch (Exception e)
                    {
                        raceFailure = e;
                    }
                });
                backend.Start();
                scribbler.Start();
                try
                {
                    for (_step = 0; _step < steps && raceFailure is null; _step++)
                    {
                        Step();
                        CheckAttackerMappings();
                        if (_step % 32 == 31)
                        {
                            CheckVictimAndBackend();
                        }
                    }
                }
                finally
                {
                    // On a busy host the backend's thread may have started late: it races for at least as many steps.
                    while (raceFailure is null && Volatile.Read(ref backendSteps) < steps / 4 && backend.IsAlive)
                    {
                        Thread.Sleep(1);
                    }

                    Volatile.Write(ref stop, true);
                    backend.Join();
                    scribbler.Join();
                }

                if (raceFailure is not null)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(raceFailure);
                }

                CheckVictimAndBackend();
                CheckDeaths();
            }
            finally
            {
                _m.Dispose();
            }
        }

        private void Step()
        {
            _preempt = _rng.Next(4) == 0 ? 0.3 : 0;
            int kind = _rng.Next(100);
            if (kind < 15 && !_concurrent)
            {
                BackendStep(_rng);
                return;
            }

            if (kind < 21) // with the backend on its own thread, its share of the steps rewrites the table
            {
                ScribbleOwnTable(_rng, statusToo: true);
                return;
            }

            if (kind < 27)
            {
                ulong idx = (_rng.Next(3) == 0 ? 1UL << 31 : 0UL) | (uint)(_rng.Next(5) == 0 ? _rng.Next() : _rng.Next(6));
                ulong gfn = AddressGfn();
                _named.Add(gfn);
                long rc = _m.Host.AddToPhysmap(_a.Grant, idx, new GuestFrameNumber(gfn));
                CheckResult(rc, $"add_to_physmap idx {idx:x} gfn {gfn:x}");
                return;
            }

            if (kind < 28)
            {
                RemoveFromPhysmap();
                return;
            }

            HypercallAbi abi = _rng.Next(4) == 0 ? HypercallAbi.Compat32 : HypercallAbi.Native64;
            GrantTableOp cmd = PickCommand();
            ulong uop = OperationPointer();
            ulong count = Count(cmd);
            WriteOperations(cmd, abi, uop, count);
            long result = CallToCompletion(_a, cmd, uop, count, abi);
            CheckResult(result, $"{cmd} uop {uop:x} count {count} {abi}");
            if (cmd == GrantTableOp.MapGrantRef && abi == HypercallAbi.Native64 && count <= 16)
            {
                CollectHandles(uop, (int)count);
            }

            if (cmd == GrantTableOp.Copy && abi == HypercallAbi.Native64 && count <= 16)
            {
                CountCopies(uop, (int)count);
            }
        }

        // The backend maps the attacker's grants at its slots, unmaps them, and copies between them and its frames
        // 32..63, as blkback and netback do with a frontend's grants, whatever the attacker's table says meanwhile.
        private void BackendStep(Random rng)
        {
            GrantTableOp cmd = rng.Next(3) switch
            {
                0 => GrantTableOp.MapGrantRef,
                1 => GrantTableOp.UnmapGrantRef,
                _ => GrantTableOp.Copy,
            };
            int n = rng.Next(1, 5);
            var unmapping = new List<(uint Handle, ulong Addr)>();
            for (int i = 0; i < n; i++)
            {
                uint gref = rng.Next(4) == 0 ? (uint)rng.Next(600) : (uint)rng.Next(16);
                ushort len = (ushort)rng.Next(1, 4097);
                var frame = new GnttabCopyPtr { Gmfn = (ulong)rng.Next(32, 64), DomId = DomainId.Self, Offset = (ushort)rng.Next(4097 - len) };
                var grant = new GnttabCopyPtr { Ref = gref, DomId = Attacker, Offset = (ushort)rng.Next(4097 - len) };
                bool fromGrant = rng.Next(2) == 0;
                (uint Handle, ulong Addr) held = _backendHandles.Count > 0 ? _backendHandles[rng.Next(_backendHandles.Count)] : (0, Slot0 << 12);
                if (cmd == GrantTableOp.UnmapGrantRef)
                {
                    unmapping.Add(held);
                }

                bool ok = cmd switch
                {
                    GrantTableOp.MapGrantRef => WriteTo(_b, Buffer, i, new GnttabMapGrantRef
                    {
                        HostAddr = (Slot0 + (ulong)rng.Next(Slots)) << 12,
                        Flags = (uint)(GrantMapFlags.HostMap | (rng.Next(2) == 0 ? GrantMapFlags.ReadOnly : 0)),
                        Ref = gref,
                        Dom = Attacker,
                        Status = 77,
                    }),
                    GrantTableOp.UnmapGrantRef => WriteTo(_b, Buffer, i, new GnttabUnmapGrantRef
                    {
                        HostAddr = held.Addr, Handle = held.Handle, Status = 77,
                    }),
                    _ => WriteTo(_b, Buffer, i, new GnttabCopy
                    {
                        Source = fromGrant ? grant : frame,
                        Dest = fromGrant ? frame : grant,
                        Len = len,
                        Flags = (ushort)(fromGrant ? GrantCopyFlags.SourceGref : GrantCopyFlags.DestGref),
                        Status = 77,
                    }),
                };
                Assert.True(ok);
            }

            long rc = CallToCompletion(_b, cmd, Buffer, (ulong)n, HypercallAbi.Native64);
            CheckResult(rc, $"the backend's {cmd} of {n}");
            for (int i = 0; i < n; i++)
            {
                if (cmd == GrantTableOp.Copy)
                {
                    BackendOpsDone += GuestValues.Get<GnttabCopy>(_b, Buffer + ((ulong)i * (ulong)sizeof(GnttabCopy))).Status == 0 ? 1 : 0;
                }
                else if (cmd == GrantTableOp.MapGrantRef)
                {
                    var op = GuestValues.Get<GnttabMapGrantRef>(_b, Buffer + ((ulong)i * (ulong)sizeof(GnttabMapGrantRef)));
                    if (op.Status == 0)
                    {
                        _backendHandles.Add((op.Handle, op.HostAddr));
                        BackendOpsDone++;
                    }
                }
                else if (GuestValues.Get<GnttabUnmapGrantRef>(_b, Buffer + ((ulong)i * (ulong)sizeof(GnttabUnmapGrantRef))).Status == 0)
                {
                    _backendHandles.Remove(unmapping[i]);
                }
            }
        }

        // XENMEM_remove_from_physmap as a hypervisor answers it: a table frame leaves through the grant tables; otherwise
        // the attacker's own RAM page at the address goes (its frame freed through the references, so a frame the
        // backend maps through one of the attacker's grants lives on until the backend unmaps it).
        private void RemoveFromPhysmap()
        {
            ulong gfn = _rng.Next(3) switch
            {
                0 => (ulong)_rng.Next(64),
                1 => AddressGfn(),
                _ => PageTheBackendMaps(),
            };
            long rc = _m.Host.RemoveTableFrame(_a.Grant, new GuestFrameNumber(gfn));
            CheckResult(rc, $"remove_from_physmap gfn {gfn:x}");
            bool operationPage = gfn >= Buffer >> 12 && gfn < (Buffer >> 12) + 4;
            if (rc == XenErrno.ENOENT.Negated() && !operationPage && !_m.Host.IsGrantMapping(_a.Grant, new GuestFrameNumber(gfn)) &&
                _a.Ept.TryLookup(new GuestFrameNumber(gfn), out MachineFrameNumber mfn, out _) &&
                _m.Memory.TryGetOwner(mfn, out FrameOwner owner) && owner.DomainId == Attacker)
            {
                _a.Ept.Unmap(new GuestFrameNumber(gfn).Address, 1);
                FreesDeferred += _m.Frames.Free(mfn) ? 0 : 1;
            }
        }

        // The attacker's gfn of a frame the backend maps now, if any.
        private ulong PageTheBackendMaps()
        {
            for (ulong slot = Slot0; slot < Slot0 + Slots; slot++)
            {
                if (_b.Ept.TryLookup(new GuestFrameNumber(slot), out MachineFrameNumber mfn, out _))
                {
                    int i = Array.IndexOf(_a.Ram, mfn);
                    if (i >= 0)
                    {
                        return (ulong)i;
                    }
                }
            }

            return (ulong)_rng.Next(64);
        }

        private GrantTableOp PickCommand() => _rng.Next(100) switch
        {
            < 28 => GrantTableOp.MapGrantRef,
            < 45 => GrantTableOp.UnmapGrantRef,
            < 72 => GrantTableOp.Copy,
            < 78 => GrantTableOp.SetupTable,
            < 81 => GrantTableOp.QuerySize,
            < 86 => GrantTableOp.SetVersion,
            < 88 => GrantTableOp.GetVersion,
            < 95 => GrantTableOp.SwapGrantRef,
            < 97 => GrantTableOp.UnmapAndReplace,
            < 98 => GrantTableOp.GetStatusFrames,
            _ => (GrantTableOp)_rng.Next(16),
        };

        private ulong Count(GrantTableOp cmd) => _rng.Next(40) switch
        {
            0 => 0,
            1 => (ulong)(uint)_rng.Next() | 0x8000_0000UL,
            2 => (ulong)_rng.NextInt64(),
            3 => 4096,
            _ => cmd is GrantTableOp.MapGrantRef or GrantTableOp.UnmapGrantRef or GrantTableOp.Copy or GrantTableOp.SwapGrantRef
                ? (ulong)_rng.Next(1, 9)
                : 1,
        };

        private ulong OperationPointer() => _rng.Next(20) switch
        {
            0 => (63UL << 12) + 4096 - (ulong)_rng.Next(1, 48),          // straddles the end of RAM
            1 => (Slot0 + (ulong)_rng.Next(Slots)) << 12,                 // maybe in a (read-only) grant mapping
            2 => 0x7000_0000_0000UL + (ulong)_rng.Next(4096),            // not mapped
            3 => (ulong)_rng.NextInt64(),
            4 => (ulong)_rng.Next(64) << 12,                              // over its own RAM, table frames included
            _ => Buffer + (ulong)_rng.Next(0, 4 * 4096 - 64),
        };

        private ushort DomId() => DomId(_rng);

        private static ushort DomId(Random rng) => rng.Next(12) switch
        {
            0 or 1 or 2 => Victim,
            3 => Attacker,
            4 => Backend,
            5 or 6 => DomainId.Self,
            7 => 0,
            8 => 4,
            9 => (ushort)(0x7FF0 + rng.Next(16)),
            _ => (ushort)rng.Next(65536),
        };

        private uint Ref() => _rng.Next(10) switch
        {
            < 4 => _victimRefsToA[_rng.Next(_victimRefsToA.Count)],
            4 => _victimRefsToB[_rng.Next(_victimRefsToB.Count)],
            5 => (uint)_rng.Next(16),
            6 => (uint)_rng.Next(2048),
            7 => (uint)(_v.Grant.EntryCount - 1 + _rng.Next(2)),
            _ => (uint)_rng.Next() * (uint)_rng.Next(1, 3),
        };

        private ulong AddressGfn() => _rng.Next(10) switch
        {
            < 5 => Slot0 + (ulong)_rng.Next(Slots),
            5 => (ulong)_rng.Next(64),                                     // over RAM
            6 => (ulong)_rng.Next(64, 0x100),                              // unmapped, below the slots
            7 => (ulong)_rng.NextInt64(1L << 20),
            8 => (ulong)_rng.NextInt64() >> 12,                            // far beyond any EPT level
            _ => 0x1_0000_0000UL >> 12,
        };

        private ulong HostAddr()
        {
            ulong gfn = AddressGfn();
            _named.Add(gfn);
            return _rng.Next(8) == 0 ? (gfn << 12) | (uint)_rng.Next(1, 4096) : gfn << 12;
        }

        private uint Handle() => _handles.Count > 0 && _rng.Next(4) != 0
            ? _handles[_rng.Next(_handles.Count)]
            : _rng.Next(3) == 0 ? (uint)_rng.Next() : (uint)_rng.Next(300);

        private uint MapFlags() => _rng.Next(10) switch
        {
            < 5 => (uint)GrantMapFlags.HostMap,
            < 8 => (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly),
            8 => (uint)_rng.Next(32),
            _ => (uint)_rng.Next(),
        };

        private ushort Offset() => _rng.Next(8) switch
        {
            0 => 0,
            1 => (ushort)(4096 - _rng.Next(1, 64)),
            2 => 4096,
            3 => (ushort)_rng.Next(65536),
            4 => (ushort)(SubPageOffset + _rng.Next(-8, SubPageLength + 8)),
            _ => (ushort)_rng.Next(4096),
        };

        private ushort Length() => _rng.Next(8) switch
        {
            0 => 0,
            1 => 4096,
            2 => (ushort)_rng.Next(4097, 65536),
            3 => SubPageLength,
            _ => (ushort)_rng.Next(1, 600),
        };

        private GnttabCopyPtr CopySide(bool gref)
        {
            var p = new GnttabCopyPtr { DomId = DomId(), Offset = Offset() };
            if (gref)
            {
                p.Ref = Ref();
            }
            else
            {
                p.Gmfn = _rng.Next(6) switch
                {
                    < 3 => (ulong)_rng.Next(64),
                    3 => Slot0 + (ulong)_rng.Next(Slots),
                    4 => (ulong)_rng.Next(64, 0x200),
                    _ => (ulong)_rng.NextInt64(),
                };
            }

            return p;
        }

        private ushort CopyFlags() => _rng.Next(10) switch
        {
            < 4 => (ushort)GrantCopyFlags.SourceGref,
            < 7 => (ushort)GrantCopyFlags.DestGref,
            7 => (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref),
            8 => 0,
            _ => (ushort)_rng.Next(65536),
        };

        // Writes up to 16 operations (a longer call runs into whatever the memory after them holds).
        private void WriteOperations(GrantTableOp cmd, HypercallAbi abi, ulong uop, ulong count)
        {
            int n = (int)Math.Min(count, 16);
            bool compat = abi == HypercallAbi.Compat32;
            for (int i = 0; i < n; i++)
            {
                bool ok = cmd switch
                {
                    GrantTableOp.MapGrantRef => Write(uop, i, new GnttabMapGrantRef
                    {
                        HostAddr = HostAddr(), Flags = MapFlags(), Ref = Ref(), Dom = DomId(), Status = 77, Handle = 0xdead,
                    }),
                    GrantTableOp.UnmapGrantRef => Write(uop, i, new GnttabUnmapGrantRef
                    {
                        HostAddr = HostAddr(), DevBusAddr = _rng.Next(4) == 0 ? (ulong)_rng.NextInt64() : 0, Handle = Handle(), Status = 77,
                    }),
                    GrantTableOp.UnmapAndReplace => Write(uop, i, new GnttabUnmapAndReplace
                    {
                        HostAddr = HostAddr(), NewAddr = _rng.Next(2) == 0 ? 0 : HostAddr(), Handle = Handle(), Status = 77,
                    }),
                    GrantTableOp.SwapGrantRef => Write(uop, i, new GnttabSwapGrantRef { RefA = Ref(), RefB = Ref(), Status = 77 }),
                    GrantTableOp.Copy when compat => WriteCompatCopy(uop, i),
                    GrantTableOp.Copy => WriteCopy(uop, i),
                    GrantTableOp.SetupTable when compat => Write(uop, i, new CompatGnttabSetupTable
                    {
                        Dom = DomId(), NrFrames = SmallOrHuge(), Status = 77, FrameList = (uint)OperationPointer(),
                    }),
                    GrantTableOp.SetupTable => Write(uop, i, new GnttabSetupTable
                    {
                        Dom = DomId(), NrFrames = SmallOrHuge(), Status = 77, FrameList = OperationPointer(),
                    }),
                    GrantTableOp.GetStatusFrames => Write(uop, i, new GnttabGetStatusFrames
                    {
                        Dom = DomId(), NrFrames = SmallOrHuge(), Status = 77, FrameList = OperationPointer(),
                    }),
                    GrantTableOp.QuerySize => Write(uop, i, new GnttabQuerySize { Dom = DomId(), Status = 77 }),
                    GrantTableOp.SetVersion => Write(uop, i, new GnttabSetVersion
                    {
                        Version = _rng.Next(6) == 0 ? (uint)_rng.Next() : (uint)_rng.Next(4),
                    }),
                    GrantTableOp.GetVersion => Write(uop, i, new GnttabGetVersion { Dom = DomId() }),
                    _ => WriteRandom(uop, i),
                };
                if (!ok)
                {
                    return;
                }
            }
        }

        private bool WriteCopy(ulong uop, int i) => Write(uop, i, _rng.Next(2) == 0 ? PlausibleCopy() : RandomCopy());

        private GnttabCopy RandomCopy()
        {
            ushort flags = CopyFlags();
            return new GnttabCopy
            {
                Source = CopySide((flags & 1) != 0 ^ _rng.Next(20) == 0),
                Dest = CopySide((flags & 2) != 0 ^ _rng.Next(20) == 0),
                Len = Length(),
                Flags = flags,
                Status = 77,
            };
        }

        // What a backend would ask (a grant of the victim's on one side, a frame of its own on the other, within the
        // page), then now and then one field made random.
        private GnttabCopy PlausibleCopy()
        {
            bool fromGrant = _rng.Next(2) == 0;
            ushort len = (ushort)_rng.Next(1, 4097);
            uint gref = _victimRefsToA[_rng.Next(_victimRefsToA.Count)];
            var grant = new GnttabCopyPtr { Ref = gref, DomId = Victim, Offset = (ushort)_rng.Next(4097 - len) };
            var frame = new GnttabCopyPtr { Gmfn = (ulong)_rng.Next(64), DomId = DomainId.Self, Offset = (ushort)_rng.Next(4097 - len) };
            var op = new GnttabCopy
            {
                Source = fromGrant ? grant : frame,
                Dest = fromGrant ? frame : grant,
                Len = len,
                Flags = (ushort)(fromGrant ? GrantCopyFlags.SourceGref : GrantCopyFlags.DestGref),
                Status = 77,
            };
            switch (_rng.Next(12))
            {
                case 0: op.Len = Length(); break;
                case 1: op.Flags = CopyFlags(); break;
                case 2: op.Source = CopySide(_rng.Next(2) == 0); break;
                case 3: op.Dest = CopySide(_rng.Next(2) == 0); break;
                case 4: op.Source.Offset = Offset(); break;
                case 5: op.Dest.Offset = Offset(); break;
            }

            return op;
        }

        private bool WriteCompatCopy(ulong uop, int i)
        {
            ushort flags = CopyFlags();
            GnttabCopyPtr s = CopySide((flags & 1) != 0), d = CopySide((flags & 2) != 0);
            return Write(uop, i, new CompatGnttabCopy
            {
                Source = new CompatGnttabCopyPtr { Gmfn = (uint)s.Gmfn, DomId = s.DomId, Offset = s.Offset },
                Dest = new CompatGnttabCopyPtr { Gmfn = (uint)d.Gmfn, DomId = d.DomId, Offset = d.Offset },
                Len = Length(),
                Flags = flags,
                Status = 77,
            });
        }

        private uint SmallOrHuge() => _rng.Next(6) switch
        {
            0 => (uint)_rng.Next(),
            1 => (uint)_rng.Next(60, 70),
            _ => (uint)_rng.Next(6),
        };

        private bool WriteRandom(ulong uop, int i)
        {
            Span<byte> bytes = stackalloc byte[40];
            _rng.NextBytes(bytes);
            return _a.TryWrite(uop + ((ulong)i * 40), bytes);
        }

        private bool Write<T>(ulong uop, int i, T value) where T : unmanaged => WriteTo(_a, uop, i, value);

        private static bool WriteTo<T>(TestDomain d, ulong uop, int i, T value) where T : unmanaged =>
            d.TryWrite(uop + ((ulong)i * (ulong)Unsafe.SizeOf<T>()), MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)));

        private long Call(TestDomain caller, GrantTableOp cmd, ulong uop, ulong count, HypercallAbi abi) =>
            Call(caller, cmd, uop, count, abi, out _);

        private long Call(TestDomain caller, GrantTableOp cmd, ulong uop, ulong count, HypercallAbi abi, out HypercallArguments after) =>
            GrantTableCall.Invoke(_dispatcher, caller, (ulong)cmd, uop, count, abi, out after);

        // A preempted call comes back as a continuation (rc = the hypercall's number, arguments advanced): the guest
        // re-executes it, as its vCPU would on resuming at the VMCALL.
        private long CallToCompletion(TestDomain caller, GrantTableOp cmd, ulong uop, ulong count, HypercallAbi abi)
        {
            ulong c = (ulong)cmd;
            for (int round = 0; ; round++)
            {
                long rc = Call(caller, (GrantTableOp)c, uop, count, abi, out HypercallArguments after);
                if (rc != (long)HypercallNumber.GrantTableOp || round > 100_000)
                {
                    return rc;
                }

                Assert.True((after[0], after[1], after[2]) != (c, uop, count),
                    $"{_replay}, step {_step}: a continuation of {cmd} made no progress (count {count})");
                (c, uop, count) = (after[0], after[1], after[2]);
                _preempt = 0.3;
            }
        }

        private void CountCopies(ulong uop, int n)
        {
            for (int i = 0; i < n; i++)
            {
                GnttabCopy op = default;
                if (!_a.TryRead(uop + ((ulong)i * (ulong)sizeof(GnttabCopy)), MemoryMarshal.AsBytes(new Span<GnttabCopy>(ref op))))
                {
                    return;
                }

                if (op.Status == 0 && (op.Flags & 3) != 0)
                {
                    GrantCopiesDone++;
                }
            }
        }

        private void CollectHandles(ulong uop, int n)
        {
            for (int i = 0; i < n; i++)
            {
                GnttabMapGrantRef op = default;
                if (!_a.TryRead(uop + ((ulong)i * (ulong)sizeof(GnttabMapGrantRef)), MemoryMarshal.AsBytes(new Span<GnttabMapGrantRef>(ref op))))
                {
                    return;
                }

                if (op.Status == 0)
                {
                    MapsDone++;
                    if (_handles.Count < 64)
                    {
                        _handles.Add(op.Handle);
                    }
                }
            }
        }

        // The attacker rewrites entries of its own table between calls, or (threaded) from a second vCPU while its
        // calls and the backend's run: grants to the backend or to itself of its RAM, of the frames it maps from the
        // victim, of anything; junk flags and domids. The status words too, from the vCPU that switches versions only
        // (a switch to v1 frees the status frames). Shared frames are not freed while the attacker lives.
        private void ScribbleOwnTable(Random rng, bool statusToo)
        {
            if (statusToo && _a.Grant.StatusFrameCount > 0 && rng.Next(4) == 0)
            {
                // v2: the status words are the hypervisor's to set, but the guest can write them too.
                byte* status = _m.Memory.GetFramePointer(_a.Grant.GetStatusFrame(rng.Next(_a.Grant.StatusFrameCount)));
                ((ushort*)status)[rng.Next(rng.Next(2) == 0 ? 16 : 2048)] = (ushort)rng.Next(65536);
                return;
            }

            int frames = _a.Grant.SharedFrameCount;
            if (frames == 0)
            {
                return;
            }

            int v2 = _a.Grant.Version == 2 ? 1 : 0;
            int size = v2 == 1 ? GrantEntryV2.Size : GrantEntryV1.Size;
            int at = rng.Next(4) == 0 ? rng.Next(4096 / size) : rng.Next(16);
            byte* frame = _m.Memory.GetFramePointer(_a.Grant.GetSharedFrame(rng.Next(4) == 0 ? rng.Next(frames) : 0));
            var e = (ulong*)(frame + (at * size));
            bool plausible = rng.Next(2) == 0;
            ushort flags = plausible
                ? (ushort)(GrantEntryFlags.PermitAccess | (rng.Next(2) == 0 ? GrantEntryFlags.ReadOnly : 0))
                : (ushort)(rng.Next(4) == 0 ? rng.Next(65536) : (rng.Next(4) | (rng.Next(2) << 2) | (rng.Next(2) << 8)));
            ushort domid = plausible ? (rng.Next(4) == 0 ? Attacker : Backend) : DomId(rng);
            ulong gfn = rng.Next(4) switch
            {
                0 or 1 => (ulong)rng.Next(64),
                2 => Slot0 + (ulong)rng.Next(Slots),
                _ => rng.Next(2) == 0 ? (ulong)rng.NextInt64() : (ulong)rng.Next(0x200),
            };
            if (v2 == 1)
            {
                e[1] = gfn;
                e[0] = flags | ((ulong)domid << 16) | ((ulong)(uint)rng.Next() << 32 & (plausible ? 0 : ~0UL));
            }
            else
            {
                e[0] = flags | ((ulong)domid << 16) | ((gfn & 0xFFFF_FFFF) << 32);
            }
        }

        private void CheckResult(long rc, string what) =>
            Assert.True(rc >= 0 || (rc >= -4095 && Enum.IsDefined((XenErrno)(-rc))),
                $"{_replay}, step {_step}: {what} returned {rc}, neither >= 0 nor a Xen errno");

        private void CheckAttackerMappings()
        {
            foreach (ulong gfn in _named)
            {
                if (!_a.Ept.TryLookup(new GuestFrameNumber(gfn), out MachineFrameNumber mfn, out EptAccess access))
                {
                    continue;
                }

                // A granted frame stays the victim's while it is mapped, even after the victim died.
                bool allocated = _m.Memory.TryGetOwner(mfn, out FrameOwner owner);
                bool own = allocated && owner.DomainId == Attacker;
                bool table = IsOwnTableFrame(mfn);
                bool granted = allocated && owner.DomainId == Victim && _grantedToA.TryGetValue(mfn.Value, out EptAccess most) &&
                    (access & ~most & (EptAccess.Write | EptAccess.Execute)) == 0;
                Assert.True(own || table || granted,
                    $"{_replay}, step {_step}: the attacker's gfn {gfn:x} maps mfn {mfn.Value:x} ({(allocated ? owner : "free")}) with {access}");
                if (granted)
                {
                    Assert.True(_m.Host.IsGrantMapping(_a.Grant, new GuestFrameNumber(gfn)),
                        $"{_replay}, step {_step}: gfn {gfn:x} maps a granted frame without a grant mapping");
                }
            }
        }

        // What the backend maps at its slots is its own, or the attacker's own frame through a grant mapping: never a frame
        // the attacker maps from the victim, nor a table frame.
        private void CheckBackendMappings()
        {
            for (ulong gfn = Slot0; gfn < Slot0 + Slots; gfn++)
            {
                if (!_b.Ept.TryLookup(new GuestFrameNumber(gfn), out MachineFrameNumber mfn, out EptAccess access))
                {
                    continue;
                }

                bool allocated = _m.Memory.TryGetOwner(mfn, out FrameOwner owner);
                Assert.True(allocated && owner.DomainId == Attacker && (access & EptAccess.Execute) == 0,
                    $"{_replay}, step {_step}: the backend's gfn {gfn:x} maps mfn {mfn.Value:x} ({(allocated ? owner : "free")}) with {access}");
            }
        }

        private bool IsOwnTableFrame(MachineFrameNumber mfn)
        {
            for (int i = 0; i < _a.Grant.SharedFrameCount; i++)
            {
                if (_a.Grant.GetSharedFrame(i) == mfn)
                {
                    return true;
                }
            }

            for (int i = 0; i < _a.Grant.StatusFrameCount; i++)
            {
                if (_a.Grant.GetStatusFrame(i) == mfn)
                {
                    return true;
                }
            }

            return false;
        }

        // Halfway through some runs the victim dies with its frames mapped by the attacker, and a newcomer (domain 4)
        // takes whatever memory is free: a frame still mapped must not be among it (the attacker's EPT check sees the
        // newcomer's frames as no one's it may map), and nothing may write the newcomer's frames.
        private void KillVictim()
        {
            _m.Kill(_v);
            VictimFramesMappedAtDeath = _m.Frames.PendingFreeCount;
            _newcomer = _m.AddDomain(4);
            for (int i = 0; i < TestMachine.RamFrames; i++)
            {
                _newcomer.RamPage(i).Fill(0xEE);
            }
        }

        private void CheckVictimAndBackend()
        {
            for (int i = 0; _newcomer is not null && i < TestMachine.RamFrames; i++)
            {
                Assert.True(!_newcomer.RamPage(i).ContainsAnyExcept((byte)0xEE), $"{_replay}, step {_step}: the newcomer's frame {i} changed");
            }

            for (int i = 0; i < TestMachine.RamFrames; i++)
            {
                Span<byte> b = _b.RamPage(i);
                Assert.True(i >= 32 || i == (int)(Buffer >> 12) || b.SequenceEqual(_backendBefore[i]),
                    $"{_replay}, step {_step}: the backend's frame {i} changed");
                if (i is WritableA or WritableB || _v.Dead)
                {
                    continue;
                }

                Span<byte> v = _v.RamPage(i);
                if (i == SubPageFrame && _v.Grant.Version == 2)
                {
                    Assert.True(v[..SubPageOffset].SequenceEqual(_victimBefore[i].AsSpan(0, SubPageOffset)) &&
                        v[(SubPageOffset + SubPageLength)..].SequenceEqual(_victimBefore[i].AsSpan(SubPageOffset + SubPageLength)),
                        $"{_replay}, step {_step}: the victim's sub-page grant was written outside its bytes");
                    continue;
                }

                Assert.True(v.SequenceEqual(_victimBefore[i]), $"{_replay}, step {_step}: the victim's frame {i} changed");
            }

            foreach ((uint r, ulong header, ulong tail) in _v.Dead ? [] : _victimEntries)
            {
                const ulong busy = (ulong)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);
                Assert.True((VictimEntryHeader(r) & ~busy) == (header & ~busy) && VictimEntryRest(r) == tail,
                    $"{_replay}, step {_step}: the victim's grant entry {r} changed");
            }
        }

        // The header (flags, domid, and the v1 frame) and the rest of a v2 entry of the victim's table.
        private unsafe ulong VictimEntryHeader(uint r) => *(ulong*)VictimEntry(r);

        private unsafe ulong VictimEntryRest(uint r) => _v.Grant.Version == 2 ? *(ulong*)(VictimEntry(r) + 8) : 0;

        private unsafe byte* VictimEntry(uint r)
        {
            int size = _v.Grant.Version == 2 ? GrantEntryV2.Size : GrantEntryV1.Size;
            int perFrame = 4096 / size;
            return _m.Memory.GetFramePointer(_v.Grant.GetSharedFrame((int)(r / (uint)perFrame))) + (r % (uint)perFrame * (uint)size);
        }

        // The attacker dies with whatever it holds: every pin on the victim's grants goes, the victim can end every
        // grant, and once all three are dead no machine frame is left allocated or waiting to be freed.
        private void CheckDeaths()
        {
            // A RAM frame the attacker placed a table frame over was released then (Xen's guest_physmap_add_page):
            // its death frees what it still owns.
            _m.Host.DestroyDomain(_a.Grant);
            foreach (MachineFrameNumber f in _a.Ram)
            {
                if (_m.Memory.TryGetOwner(f, out FrameOwner owner) && owner.DomainId == Attacker && !_m.Frames.IsFreePending(f))
                {
                    _m.Frames.Free(f);
                }
            }

            _a.Ept.Dispose();
            _a.Dead = true;
            for (uint r = 0; !_v.Dead && r < (uint)_v.Grant.EntryCount; r++)
            {
                Assert.True(_v.Grant.GetPinCount(r) == 0, $"{_replay}: the victim's grant {r} is still pinned after the attacker died");
            }

            foreach (uint r in _v.Dead ? [] : _victimRefsToA)
            {
                ushort flags = (ushort)VictimEntryHeader(r);
                Assert.True(_v.Grant.Version == 2 || (flags & (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing)) == 0,
                    $"{_replay}: the victim's grant {r} still says it is in use: flags {flags:x}");
            }

            foreach (TestDomain? d in new[] { _v, _b, _newcomer })
            {
                if (d is { Dead: false })
                {
                    _m.Kill(d);
                }
            }

            Assert.Equal(0, _m.Frames.PendingFreeCount);
            Assert.True(_m.Memory.FreeFrames == _initialFree,
                $"{_replay}: {_initialFree - _m.Memory.FreeFrames} machine frame(s) still allocated after every domain died");
        }
    }
}
