using System.Collections.Concurrent;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Review of a hostile pair of guests on several vCPUs at once (2026-12-06): a granter (d2) whose first vCPU rewrites
/// its grant entries (v1 and v2 forms, sub-page, read-only, other domids) while its second switches versions, grows
/// its table, places and removes table frames and gives back and repopulates RAM pages; a grantee (d1) whose vCPUs
/// map, unmap (in batches), copy (API and hypercall with a preemption hook) and have their mappings released. Checked
/// while they run, under the host's lock: every frame the grantee's grant slots map is held by a reference and is its
/// granter's; afterwards no pin, reference or pending free is left and no exception reached the host.
/// </summary>
public sealed class VcpuRaceReviewTests : IDisposable
{
    private const ushort Grantee = 1;
    private const ushort Granter = 2;
    private const int Grants = 24;          // entries 0..23 of the granter's first frame (reserved ones included)
    private const ulong MapBase = 0x200;    // the grantee's grant-mapping slots
    private const ulong TableBase = 0x100;  // where the granter places table frames
    private const ulong SelfMapBase = 0x300; // where the granter maps its own grants
    private const ulong Ops = 0x30;         // the grantee's hypercall operations (paging off), a page per copying vCPU

    private readonly TestMachine _m = new();
    private readonly TestDomain _a;
    private readonly TestDomain _b;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly ConcurrentQueue<Exception> _errors = new();
    private readonly object _bRam = new(); // the granter's RAM array (its physmap lock)
    private readonly object _bAlive = new(); // d2's table frame is written by its vCPU only while d2 lives
    private volatile bool _stop;

    public VcpuRaceReviewTests()
    {
        _a = _m.AddDomain(Grantee);
        _b = _m.AddDomain(Granter);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
        _dispatcher.PreemptCheck = _ => Random.Shared.Next(4) == 0;
        _m.Host.FlushTranslations = _ => { };
    }

    public void Dispose() => _m.Dispose();

    private void Guard(Action body)
    {
        try
        {
            body();
        }
        catch (Exception e)
        {
            _errors.Enqueue(e);
            _stop = true;
        }
    }

    // d2's vCPU 0: rewrites its entries in either layout, as a guest may at any time (until it dies: its table frame
    // is freed then).
    private unsafe void RewriteEntries(int seed, int steps)
    {
        var rng = new Random(seed);
        byte* frame = (byte*)_m.Memory.GetFramePointer(_b.Grant.GetSharedFrame(0));
        for (int s = 0; s < steps && !_stop; s++)
        {
            Monitor.Enter(_bAlive); // the table frame is freed at d2's death
            try
            {
                if (_b.Dead)
                {
                    return;
                }

                Rewrite(rng, frame);
            }
            finally
            {
                Monitor.Exit(_bAlive);
            }
        }
    }

    private static unsafe void Rewrite(Random rng, byte* frame)
    {
        uint gref = (uint)rng.Next(Grants);
        ushort flags = (ushort)((ushort)GrantEntryFlags.PermitAccess | (rng.Next(3) == 0 ? (ushort)GrantEntryFlags.ReadOnly : 0));
        if (rng.Next(8) == 0)
        {
            flags |= (ushort)GrantEntryFlags.SubPage;
        }

        ushort domid = rng.Next(16) switch
        {
            0 => 7,
            1 or 2 or 3 => Granter, // to itself
            _ => Grantee,
        };
        uint gfn = (uint)rng.Next(TestMachine.RamFrames + 4);
        switch (rng.Next(4))
        {
            case 0: // v1: flags, domid, frame
                Volatile.Write(ref *(ulong*)(frame + (gref * 8)), flags | ((ulong)domid << 16) | ((ulong)gfn << 32));
                break;
            case 1: // v2: header, sub-page window, frame
                Volatile.Write(ref *(ulong*)(frame + (gref * 16) + 8), gfn);
                Volatile.Write(ref *(ulong*)(frame + (gref * 16)), flags | ((ulong)domid << 16) | ((ulong)rng.Next(4096) << 32) | ((ulong)rng.Next(4097) << 48));
                break;
            case 2: // end access (v1 or v2 header)
                Interlocked.And(ref *(uint*)(frame + (gref * (rng.Next(2) == 0 ? 8u : 16u))), 0xFFFF_0000u | (uint)GrantEntryFlags.Reading | (uint)GrantEntryFlags.Writing);
                break;
            default: // make it read-only while in use (grant_table.h's compare-exchange)
                uint* w = (uint*)(frame + (gref * 8));
                uint old = Volatile.Read(ref *w);
                if ((old & (uint)GrantEntryFlags.Writing) == 0)
                {
                    Interlocked.CompareExchange(ref *w, old | (uint)GrantEntryFlags.ReadOnly, old);
                }

                break;
        }
    }

    // d2's vCPU 1: versions, growth, table frames in its physmap, RAM given back and repopulated.
    private void ChangeTable(int seed, int steps, int dieAt)
    {
        var rng = new Random(seed);
        Span<ulong> frames = stackalloc ulong[4];
        for (int s = 0; s < steps && !_stop; s++)
        {
            if (s == dieAt)
            {
                lock (_bRam)
                {
                    lock (_bAlive)
                    {
                        _m.Kill(_b); // DestroyDomain, then its frames freed, then its EPT disposed
                    }
                }

                return;
            }

            switch (rng.Next(6))
            {
                case 0:
                    var v = new GnttabSetVersion { Version = (uint)rng.Next(1, 3) };
                    _m.Host.SetVersion(_b.Grant, ref v);
                    break;
                case 1:
                    _m.Host.SetupTable(_b.Grant, false, DomainId.Self, (uint)rng.Next(1, 5), frames);
                    break;
                case 2:
                    ulong index = (uint)rng.Next(4) | (rng.Next(2) == 0 ? GrantTableHost.GrantTableStatusIndex : 0UL);
                    if (rng.Next(4) != 0)
                    {
                        _m.Host.AddToPhysmap(_b.Grant, index, new GuestFrameNumber(TableBase + (ulong)rng.Next(6)));
                        break;
                    }

                    // Over a RAM page, which the host frees (the page the test kept for that slot is replaced by an
                    // unmapped one, which the death frees).
                    int r = rng.Next(TestMachine.RamFrames);
                    lock (_bRam)
                    {
                        bool ram = _b.Ept.TryLookup(new GuestFrameNumber((ulong)r), out MachineFrameNumber was, out _) && was.Value == _b.Ram[r].Value;
                        if (_m.Host.AddToPhysmap(_b.Grant, index, new GuestFrameNumber((ulong)r)) == 0 && ram)
                        {
                            _b.Ram[r] = _m.Memory.AllocateFrame(new FrameOwner(Granter));
                        }
                    }

                    break;
                case 3:
                    _m.Host.RemoveTableFrame(_b.Grant, new GuestFrameNumber(TableBase + (ulong)rng.Next(6)));
                    break;
                default:
                    // decrease_reservation then populate_physmap of a RAM page the entries may name (the hypervisor's
                    // physmap handler: out of the EPT, flushed, freed through the reference counts).
                    int k = rng.Next(TestMachine.RamFrames);
                    lock (_bRam)
                    {
                        _m.Host.RemoveTableFrame(_b.Grant, new GuestFrameNumber((ulong)k)); // a table frame placed there first
                        _b.Ept.Unmap(new GuestFrameNumber((ulong)k).Address, 1);
                        GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _b.Ept.Pointer);
                        _m.Frames.Free(_b.Ram[k]);
                        _b.Ram[k] = _m.Memory.AllocateFrame(new FrameOwner(Granter));
                        _b.Ept.Map(new GuestFrameNumber((ulong)k).Address, _b.Ram[k], 1, EptAccess.ReadWriteExecute);
                    }

                    break;
            }
        }
    }

    // d1's vCPU 0 (or d2's vCPU 2, mapping its own grants): maps and unmaps d2's grants.
    private void MapUnmap(int seed, int steps, TestDomain grantee, ulong mapBase)
    {
        var rng = new Random(seed);
        var handles = new List<(uint Handle, ulong Addr)>();
        for (int s = 0; s < steps && !_stop; s++)
        {
            if (handles.Count < 8 && rng.Next(3) != 0)
            {
                var op = new GnttabMapGrantRef
                {
                    HostAddr = (mapBase + (ulong)rng.Next(16)) << 12,
                    Flags = (uint)(GrantMapFlags.HostMap | (rng.Next(2) == 0 ? GrantMapFlags.ReadOnly : 0)),
                    Ref = (uint)rng.Next(Grants),
                    Dom = Granter,
                };
                _m.Host.MapGrantRef(grantee.Grant, ref op);
                if (op.Status == 0)
                {
                    handles.Add((op.Handle, op.HostAddr));
                }
            }
            else if (handles.Count > 0)
            {
                int n = rng.Next(1, handles.Count + 1);
                var ops = new GnttabUnmapGrantRef[n];
                for (int i = 0; i < n; i++)
                {
                    ops[i] = new GnttabUnmapGrantRef { Handle = handles[i].Handle, HostAddr = handles[i].Addr };
                }

                _m.Host.UnmapGrantRefs(grantee.Grant, ops);
                handles.RemoveRange(0, n);
            }
            else if (rng.Next(16) == 0)
            {
                _m.Host.ReleaseMappings(grantee.Grant);
                handles.Clear();
            }
        }

        var rest = handles.Select(h => new GnttabUnmapGrantRef { Handle = h.Handle, HostAddr = h.Addr }).ToArray();
        _m.Host.UnmapGrantRefs(grantee.Grant, rest);
    }

    // d1's vCPU 1: copies from and into d2's grants, through the API and the hypercall; now and then its mappings are
    // released (a backend process that went away) and the grant slots are checked.
    private void CopyAndCheck(int seed, int steps, ulong opsGfn)
    {
        var rng = new Random(seed);
        Span<GnttabCopy> ops = stackalloc GnttabCopy[6];
        for (int s = 0; s < steps && !_stop; s++)
        {
            for (int i = 0; i < ops.Length; i++)
            {
                bool into = rng.Next(3) == 0;
                var grant = new GnttabCopyPtr { Ref = (uint)rng.Next(Grants), DomId = Granter, Offset = (ushort)rng.Next(2) };
                var own = new GnttabCopyPtr { Gmfn = (ulong)rng.Next(8, 16), DomId = DomainId.Self };
                ops[i] = new GnttabCopy
                {
                    Source = into ? own : grant,
                    Dest = into ? grant : own,
                    Len = (ushort)rng.Next(1, 64),
                    Flags = (ushort)(into ? GrantCopyFlags.DestGref : GrantCopyFlags.SourceGref),
                };
            }

            switch (rng.Next(8))
            {
                case 0:
                    _m.Host.ReleaseMappings(_a.Grant);
                    break;
                case 1:
                    CheckGrantSlots();
                    break;
                case 2:
                case 3:
                    _m.Host.Copy(_a.Grant, ops);
                    break;
                default:
                    for (int i = 0; i < ops.Length; i++)
                    {
                        GuestValues.Put(_a, (opsGfn << 12) + ((ulong)i * 40), ops[i]);
                    }

                    long rc;
                    ulong uop = opsGfn << 12;
                    uint count = (uint)ops.Length;
                    do
                    {
                        rc = GrantTableCall.Invoke(_dispatcher, _a, (ulong)GrantTableOp.Copy, uop, count, HypercallAbi.Native64, out HypercallArguments after);
                        uop = after[1];
                        count = (uint)after[2];
                    }
                    while (rc == (long)HypercallNumber.GrantTableOp);
                    Assert.Equal(0, rc);
                    break;
            }
        }
    }

    // Under the host's lock: each frame a grant slot of d1 maps is referenced and d2's.
    private void CheckGrantSlots()
    {
        using (_m.Host.Exclusive())
        {
            for (ulong g = MapBase; g < MapBase + 16; g++)
            {
                if (_a.Ept.TryLookup(new GuestFrameNumber(g), out MachineFrameNumber f, out EptAccess access))
                {
                    Assert.True(_m.Frames.ReferenceCount(f) > 0, $"gfn {g:x} maps {f}, which no reference holds");
                    Assert.True(_m.Memory.TryGetOwner(f, out FrameOwner o) && o.DomainId == Granter, $"gfn {g:x} maps {f}, not d2's");

                    // The slot's handle names this frame, and the grant it pins holds it with as much access.
                    Assert.True(_a.Grant.GrantMappedGfns.TryGetValue(g, out uint h), $"gfn {g:x} maps {f} with no handle");
                    MaptrackEntry map = _a.Grant.Maptrack[h];
                    Assert.Equal(f.Value, map.Mfn);
                    ActiveGrantEntry act = map.Granter!.Active[map.Ref];
                    Assert.Equal(f.Value, act.Mfn);
                    bool writable = (access & EptAccess.Write) != 0;
                    Assert.Equal((map.Flags & GrantMapFlags.ReadOnly) == 0, writable);
                    Assert.True((act.Pin & (writable ? ActiveGrantEntry.HostWriteMask : ActiveGrantEntry.HostReadMask)) != 0, $"gfn {g:x}: pin {act.Pin:x}");
                }
                else
                {
                    Assert.False(_a.Grant.GrantMappedGfns.ContainsKey(g), $"gfn {g:x} has a handle and no mapping");
                }
            }
        }
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(4, true)]
    [InlineData(5, true)]
    public void Two_guests_on_four_vcpus_leave_no_pin_reference_or_stray_mapping(int seed, bool granterDies)
    {
        int steps = int.TryParse(Environment.GetEnvironmentVariable("VMMKIT_GNT_RACE_STEPS"), out int n) ? n : 20_000;
        Thread[] threads =
        [
            new(() => Guard(() => RewriteEntries(seed * 10, steps * 4))),
            new(() => Guard(() => ChangeTable((seed * 10) + 1, steps, granterDies ? steps / 2 : -1))),
            new(() => Guard(() => MapUnmap((seed * 10) + 2, steps, _a, MapBase))),
            new(() => Guard(() =>
            {
                lock (_bAlive)
                {
                    if (_b.Dead)
                    {
                        return;
                    }
                }

                MapUnmap((seed * 10) + 4, granterDies ? steps / 8 : steps, _b, SelfMapBase);
            })),
            new(() => Guard(() => CopyAndCheck((seed * 10) + 3, steps / 2, Ops))),
            new(() => Guard(() => CopyAndCheck((seed * 10) + 5, steps / 2, Ops + 1))), // a second copying vCPU: the word is shared
        ];
        foreach (Thread t in threads)
        {
            t.Start();
        }

        foreach (Thread t in threads)
        {
            t.Join();
        }

        Assert.True(_errors.IsEmpty, string.Join("\n\n", _errors));

        _m.Host.ReleaseMappings(_a.Grant);
        Assert.Equal(0, _a.Grant.MappingCount);
        if (!_b.Dead)
        {
            _m.Host.ReleaseMappings(_b.Grant);
        }

        for (uint gref = 0; gref < (uint)Grants; gref++)
        {
            Assert.Equal(0u, _b.Grant.GetPinCount(gref));
        }

        Assert.Equal(0, _m.Frames.PendingFreeCount);
        foreach (MachineFrameNumber f in _b.Dead ? _a.Ram : _b.Ram.Concat(_a.Ram))
        {
            Assert.Equal(0, _m.Frames.ReferenceCount(f));
        }

        for (ulong g = MapBase; g < MapBase + 16; g++)
        {
            Assert.False(_a.Ept.TryLookup(new GuestFrameNumber(g), out _, out _));
        }

        _m.Kill(_a);
        if (!_b.Dead)
        {
            _m.Kill(_b);
        }

        Assert.Equal(0, _m.Frames.PendingFreeCount);
        Assert.Equal(0UL, _m.Memory.FramesOwnedBy(new FrameOwner(Granter)));
    }
}
