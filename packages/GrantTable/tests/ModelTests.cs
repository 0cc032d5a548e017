using CsCheck;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Model-based test: random sequences of grant, end-access, map, unmap, copy (frame or grant on either side, and
/// between grants of two other domains), guest reads and writes, version switches and domain deaths across three
/// domains, each step checked against a small reference model of what
/// Xen's grant rules allow. After every step: every grantee's EPT holds exactly the mappings the model has (no
/// access to a frame not granted, none after unmap), contents agree, GTF_reading/GTF_writing agree, and a mapped
/// frame still belongs to its granter even after the granter died and other domains allocated memory.
/// </summary>
public class ModelTests
{
    private const int Pages = 8;           // RAM frames of each domain the test uses: gfn 0..7
    private const ulong Slot0 = 0x100;     // grant mappings go to gfn 0x100..0x107
    private const int Slots = 8;

    private sealed record ModelGrant(int Granter, uint Ref, int Grantee, int Gfn, bool ReadOnly);

    private sealed record ModelMapping(int Grantee, int Slot, uint Handle, ModelGrant Grant, bool ReadOnly);

    private sealed class Model
    {
        public readonly bool[] Alive = [false, true, true, true];
        public readonly Dictionary<(int Dom, int Gfn), byte[]> Pages = [];
        public readonly List<ModelGrant> Grants = [];
        public readonly List<ModelMapping> Mappings = [];
        public readonly int[] Version = [1, 1, 1, 1];

        // v2 grants whose end of access failed because they were in use: the client (as Linux's
        // gnttab_end_foreign_access_ref_v2) invalidates the entry before it looks at the status, so the entry no longer
        // says GTF_permit_access; it leaves it GTF_readonly (ClientReviewTests; Linux writes 0). Map and copy call
        // _set_status_v2 only for a first pin or a first write pin, and it checks the type only for a first pin: while
        // pinned, reads go on, and writes only while a writable pin remains; once unpinned nothing can claim it.
        public readonly HashSet<(int Granter, uint Ref)> Cleared = [];

        public bool IsPinned(ModelGrant g) => Mappings.Any(x => x.Grant == g);

        public bool IsWritePinned(ModelGrant g) => Mappings.Any(x => x.Grant == g && !x.ReadOnly);

        // _set_status's flag checks for a claim of g: read-only-ness as granted, or, once cleared, what the pins allow.
        public bool Refuses(ModelGrant g, bool write) =>
            Cleared.Contains((g.Granter, g.Ref)) ? !IsPinned(g) || (write && !IsWritePinned(g)) : write && g.ReadOnly;

        public byte[] Page(int dom, int gfn) =>
            Pages.TryGetValue((dom, gfn), out byte[]? p) ? p : Pages[(dom, gfn)] = new byte[4096];
    }

    // The step kinds (0 to 8, as the switch below numbers them) in proportion: grants, maps and copies three times as
    // often as the others, so that sequences reach mapped grants, deaths and copies between grants before a version
    // switch or a death clears them. The recorded seeds below use s[0] % 9.
    private static readonly int[] Kinds = [0, 0, 0, 1, 2, 2, 2, 3, 4, 4, 4, 5, 6, 7, 8];

    private static readonly Gen<int[][]> Sequences = Gen.Int[0, 1 << 20].Array[6].Array[1, 70];

    // How often a run reached the operations the model is mostly about (Sample runs sequences on several threads).
    private sealed class Coverage
    {
        public int GranteeDeathsWhileMapping;   // a domain died holding mappings of others' grants
        public int GranterDeathsWhileMapped;    // a domain died while others mapped its grants
        public int EndAccessesWhileMapped;      // a granter tried to end access to a mapped grant
        public int ThreeDomainCopies;           // copies from a grant of one domain to a grant of another, that succeeded

        public void Count(ref int counter) => Interlocked.Increment(ref counter);
    }

    [Fact]
    public void Random_grant_sequences_agree_with_the_model()
    {
        var coverage = new Coverage();
        Sequences.Sample(steps => Run(steps, coverage, recordedGenerator: false), iter: 250);

        // A generator that stopped producing one of these would leave its rules untested.
        Assert.True(coverage.GranteeDeathsWhileMapping > 0, "no domain died while it held mappings");
        Assert.True(coverage.GranterDeathsWhileMapped > 0, "no granter died while its grants were mapped");
        Assert.True(coverage.EndAccessesWhileMapped > 0, "no end of access was tried on a mapped grant");
        Assert.True(coverage.ThreeDomainCopies > 0, "no copy between grants of two other domains succeeded");
    }

    // Sequences whose v2 end of access failed while the grant was mapped, then a write claim followed: with only
    // read-only pins it is refused, with a writable pin it goes on (the model said the opposite of each once). Run
    // with the generator they were recorded with, so that they are the same sequences.
    [Theory]
    [InlineData("9bjCpGbyBFa1")]
    [InlineData("8LfVmXU5rxa1")]
    public void Sequences_that_once_disagreed_agree_with_the_model(string seed) =>
        Sequences.Sample(steps => Run(steps, new Coverage(), recordedGenerator: true), seed: seed, iter: 1);

    private static void Run(int[][] steps, Coverage coverage, bool recordedGenerator)
    {
        using var m = new TestMachine(12UL << 20);
        var model = new Model();
        var doms = new TestDomain?[4];
        var shares = new InProcessGrantShare?[4];
        var mappers = new InProcessGrantMapper?[4];
        for (ushort d = 1; d <= 3; d++)
        {
            doms[d] = m.AddDomain(d, new GrantTableLimits(4, 1));
            shares[d] = new InProcessGrantShare(m.Host, doms[d]!.Grant);
            mappers[d] = new InProcessGrantMapper(m.Host, doms[d]!.Grant, new GuestFrameNumber(Slot0), Slots);
        }

        foreach (int[] s in steps)
        {
            int kind = recordedGenerator ? s[0] % 9 : Kinds[s[0] % Kinds.Length];
            int a = 1 + (s[1] % 3), b = 1 + (s[2] % 3);
            switch (kind)
            {
                case 0: // grant
                {
                    if (!model.Alive[a])
                    {
                        break;
                    }

                    int gfn = s[3] % Pages;
                    bool ro = s[4] % 2 == 0;
                    Assert.True(shares[a]!.TryGrantForeignAccess((ushort)b, (ulong)gfn, ro, out uint gref));
                    model.Grants.Add(new ModelGrant(a, gref, b, gfn, ro));
                    model.Cleared.Remove((a, gref));
                    break;
                }

                case 1: // end access
                {
                    ModelGrant? g = Pick(model.Grants.Where(x => x.Granter == a && model.Alive[a]).ToList(), s[3]);
                    if (g is null)
                    {
                        break;
                    }

                    bool inUse = model.Mappings.Any(x => x.Grant == g);
                    if (inUse)
                    {
                        coverage.Count(ref coverage.EndAccessesWhileMapped);
                    }

                    Assert.Equal(!inUse, shares[a]!.EndForeignAccess(g.Ref));
                    if (!inUse)
                    {
                        model.Grants.Remove(g);
                        model.Cleared.Remove((g.Granter, g.Ref));
                    }
                    else if (model.Version[a] == 2)
                    {
                        model.Cleared.Add((g.Granter, g.Ref));
                    }

                    break;
                }

                case 2: // map (a maps a grant of b, or a random reference)
                {
                    if (!model.Alive[a])
                    {
                        break;
                    }

                    // Half the maps pick among b's grants to a, read-only for a read-only grant (not in the recorded
                    // generator), so that more of them succeed.
                    bool toA = !recordedGenerator && s[5] % 2 == 0;
                    ModelGrant? g = Pick(model.Grants.Where(x => x.Granter == b && (!toA || x.Grantee == a)).ToList(), s[3]);
                    uint gref = g?.Ref ?? (uint)(s[3] % 600);
                    g ??= model.Grants.FirstOrDefault(x => x.Granter == b && x.Ref == gref);
                    bool ro = s[4] % 2 == 0 || (toA && g is { ReadOnly: true });
                    GrantStatus expected =
                        model.Mappings.Count(x => x.Grantee == a) == Slots ? GrantStatus.NoSpace : // the mapper's window is full
                        !model.Alive[b] ? GrantStatus.BadDomain :
                        gref >= (uint)(model.Version[b] == 1 ? 512 : 256) ? GrantStatus.BadGntref :
                        g is null || g.Grantee != a || model.Refuses(g, write: !ro) ? GrantStatus.GeneralError :
                        GrantStatus.Okay;
                    GrantStatus got = mappers[a]!.TryMap((ushort)b, gref, ro, out GrantMapping map);
                    Assert.Equal(expected, got);
                    if (got == GrantStatus.Okay)
                    {
                        model.Mappings.Add(new ModelMapping(a, (int)((map.Address >> 12) - Slot0), map.Handle, g!, ro));
                    }

                    break;
                }

                case 3: // unmap
                {
                    ModelMapping? mp = Pick(model.Mappings.Where(x => x.Grantee == a && model.Alive[a]).ToList(), s[3]);
                    if (mp is null)
                    {
                        if (model.Alive[a])
                        {
                            var bogus = new GnttabUnmapGrantRef { HostAddr = Slot0 << 12, Handle = (uint)(s[3] % 300) };
                            bool live = model.Mappings.Any(x => x.Grantee == a && x.Handle == bogus.Handle);
                            m.Host.UnmapGrantRef(doms[a]!.Grant, ref bogus);
                            if (!live)
                            {
                                Assert.Equal((short)GrantStatus.BadHandle, bogus.Status);
                            }
                        }

                        break;
                    }

                    Assert.Equal(GrantStatus.Okay, mappers[a]!.Unmap(new GrantMapping((ushort)mp.Grant.Granter, mp.Grant.Ref, mp.Handle, (Slot0 + (ulong)mp.Slot) << 12, mp.ReadOnly)));
                    model.Mappings.Remove(mp);
                    break;
                }

                case 4: // copy from a grant of b (or own frame) to own frame, a grant of b, or a grant of a third domain c
                {
                    if (!model.Alive[a])
                    {
                        break;
                    }

                    // In some of the steps that read a grant (not in the recorded generator), both sides are grants: of b, and of c, the third
                    // domain when a and b differ; picked among those granted to a, writable ones on c (ref 9 if there is none).
                    bool srcGref = s[3] % 2 == 0;
                    bool bothGref = !recordedGenerator && srcGref && (s[0] >> 10) % 2 == 1;
                    bool dstGref = bothGref || (!srcGref && s[4] % 3 == 0);
                    int c = !bothGref ? b : a != b ? 6 - a - b : 1 + ((s[2] / 3) % 3);
                    ModelGrant? g = Pick(model.Grants.Where(x => x.Granter == b && (!bothGref || x.Grantee == a)).ToList(), s[5]);
                    ModelGrant? h = bothGref ? Pick(model.Grants.Where(x => x.Granter == c && x.Grantee == a && !x.ReadOnly).ToList(), s[3] / 2) : g;
                    int off = s[4] % 4096, len = 1 + (s[5] % 64);
                    int own = s[5] % Pages;
                    var op = new GnttabCopy { Len = (ushort)len, Flags = (ushort)((srcGref ? GrantCopyFlags.SourceGref : 0) | (dstGref ? GrantCopyFlags.DestGref : 0)) };
                    op.Source = srcGref ? new GnttabCopyPtr { Ref = g?.Ref ?? 9, DomId = (ushort)b, Offset = (ushort)off } : new GnttabCopyPtr { Gmfn = (ulong)own, DomId = DomainId.Self, Offset = (ushort)off };
                    op.Dest = dstGref ? new GnttabCopyPtr { Ref = h?.Ref ?? 9, DomId = (ushort)c, Offset = 0 } : new GnttabCopyPtr { Gmfn = (ulong)((own + 1) % Pages), DomId = DomainId.Self, Offset = 0 };
                    ModelGrant? usedSrc = srcGref ? g ?? model.Grants.FirstOrDefault(x => x.Granter == b && x.Ref == 9) : null;
                    ModelGrant? usedDst = dstGref ? h ?? model.Grants.FirstOrDefault(x => x.Granter == c && x.Ref == 9) : null;

                    // gnttab_copy_one: both domains are locked, then the source is claimed, then the destination, then
                    // gnttab_copy_buf checks the bytes lie within the page.
                    GrantStatus expected =
                        srcGref && !model.Alive[b] ? GrantStatus.BadDomain :
                        dstGref && !model.Alive[c] ? GrantStatus.BadDomain :
                        srcGref && (usedSrc is null || usedSrc.Grantee != a || model.Refuses(usedSrc, write: false)) ? GrantStatus.GeneralError :
                        dstGref && (usedDst is null || usedDst.Grantee != a || model.Refuses(usedDst, write: true)) ? GrantStatus.GeneralError :
                        off + len > 4096 ? GrantStatus.BadCopyArg :
                        GrantStatus.Okay;
                    Span<GnttabCopy> ops = [op];
                    mappers[a]!.Copy(ops);
                    if (expected != (GrantStatus)ops[0].Status)
                    {
                        Assert.Fail($"copy a={a} b={b} c={c} src={srcGref} dst={dstGref} src ref={op.Source.Ref} dst ref={op.Dest.Ref} alive b={model.Alive[b]} c={model.Alive[c]}: expected {expected}, got {(GrantStatus)ops[0].Status}; grants: {string.Join(",", model.Grants.Select(x => $"d{x.Granter}:{x.Ref}->{x.Grantee}{(x.ReadOnly ? "ro" : "")}"))}");
                    }

                    if (expected == GrantStatus.Okay)
                    {
                        byte[] from = srcGref ? model.Page(b, usedSrc!.Gfn) : model.Page(a, own);
                        byte[] to = dstGref ? model.Page(c, usedDst!.Gfn) : model.Page(a, (own + 1) % Pages);
                        Array.Copy(from, off, to, 0, len);
                        if (bothGref && a != b && b != c && a != c)
                        {
                            coverage.Count(ref coverage.ThreeDomainCopies);
                        }
                    }

                    break;
                }

                case 5: // a guest writes a byte: its own RAM or a mapping slot
                {
                    if (!model.Alive[a])
                    {
                        break;
                    }

                    bool slot = s[3] % 2 == 0;
                    int index = s[4] % Pages;
                    int off = s[5] % 4096;
                    byte value = (byte)s[5];
                    ulong gpa = ((slot ? Slot0 : 0) + (ulong)index) << 12;
                    ModelMapping? mp = slot ? model.Mappings.FirstOrDefault(x => x.Grantee == a && x.Slot == index) : null;
                    bool expected = !slot || (mp is not null && !mp.ReadOnly);
                    Assert.Equal(expected, doms[a]!.TryWrite(gpa + (ulong)off, [value]));
                    if (expected)
                    {
                        (slot ? model.Page(mp!.Grant.Granter, mp.Grant.Gfn) : model.Page(a, index))[off] = value;
                    }

                    break;
                }

                case 6: // version switch (Xen: -EBUSY while a non-reserved grant is in use; all grants cleared)
                {
                    if (!model.Alive[a])
                    {
                        break;
                    }

                    uint want = (uint)(1 + (s[3] % 2));
                    var v = new GnttabSetVersion { Version = want };
                    bool busy = model.Mappings.Any(x => x.Grant.Granter == a);
                    long rc = m.Host.SetVersion(doms[a]!.Grant, ref v);
                    if (want == (uint)model.Version[a])
                    {
                        Assert.Equal(0, rc);
                    }
                    else if (busy)
                    {
                        Assert.Equal(XenErrno.EBUSY.Negated(), rc);
                    }
                    else
                    {
                        Assert.Equal(0, rc);
                        model.Version[a] = (int)want;
                        model.Cleared.RemoveWhere(k => k.Granter == a);
                        foreach (ModelGrant g in model.Grants.Where(x => x.Granter == a).ToList())
                        {
                            Assert.True(shares[a]!.EndForeignAccess(g.Ref)); // the switch invalidated it
                            model.Grants.Remove(g);
                        }
                    }

                    Assert.Equal((uint)model.Version[a], v.Version);
                    break;
                }

                case 7: // domain death
                {
                    // One in four, or always when a holds mappings or its grants are mapped (not in the recorded generator).
                    bool mapping = model.Mappings.Any(x => x.Grantee == a || x.Grant.Granter == a);
                    if (!model.Alive[a] || (s[3] % 4 != 0 && (recordedGenerator || !mapping)))
                    {
                        break;
                    }

                    if (model.Mappings.Any(x => x.Grantee == a))
                    {
                        coverage.Count(ref coverage.GranteeDeathsWhileMapping);
                    }

                    if (model.Mappings.Any(x => x.Grant.Granter == a && x.Grantee != a))
                    {
                        coverage.Count(ref coverage.GranterDeathsWhileMapped);
                    }

                    m.Kill(doms[a]!);
                    model.Alive[a] = false;
                    model.Mappings.RemoveAll(x => x.Grantee == a);
                    model.Grants.RemoveAll(x => x.Granter == a && !model.Mappings.Any(y => y.Grant == x));

                    // Another owner takes every free frame: none of them may be a frame still mapped.
                    var hog = new FrameOwner(9);
                    var taken = new List<MachineFrameNumber>();
                    while (m.Memory.TryAllocateFrame(hog, out MachineFrameNumber f))
                    {
                        taken.Add(f);
                    }

                    var mapped = model.Mappings.Select(x => doms[x.Grant.Granter]!.Ram[x.Grant.Gfn]).ToHashSet();
                    Assert.DoesNotContain(taken, mapped.Contains);
                    taken.ForEach(m.Memory.FreeFrame);
                    break;
                }

                default: // read-only probe of an unmapped slot and of a foreign frame number
                {
                    if (!model.Alive[a])
                    {
                        break;
                    }

                    int index = s[4] % Slots;
                    bool mapped = model.Mappings.Any(x => x.Grantee == a && x.Slot == index);
                    Assert.Equal(mapped, doms[a]!.TryRead((Slot0 + (ulong)index) << 12, new byte[1]));
                    break;
                }
            }

            CheckInvariants(m, model, doms, shares);
        }
    }

    private static T? Pick<T>(List<T> items, int selector) where T : class =>
        items.Count == 0 ? null : items[selector % items.Count];

    private static void CheckInvariants(TestMachine m, Model model, TestDomain?[] doms, InProcessGrantShare?[] shares)
    {
        var page = new byte[4096];
        for (int a = 1; a <= 3; a++)
        {
            if (!model.Alive[a])
            {
                continue;
            }

            TestDomain d = doms[a]!;
            for (int slot = 0; slot < Slots; slot++)
            {
                ModelMapping? mp = model.Mappings.FirstOrDefault(x => x.Grantee == a && x.Slot == slot);
                bool present = d.Ept.TryLookup(new GuestFrameNumber(Slot0 + (ulong)slot), out MachineFrameNumber frame, out EptAccess access);
                Assert.Equal(mp is not null, present);
                if (mp is null)
                {
                    continue;
                }

                TestDomain granter = doms[mp.Grant.Granter]!;
                Assert.Equal(granter.Ram[mp.Grant.Gfn], frame);
                Assert.Equal(mp.ReadOnly ? EptAccess.Read : EptAccess.Read | EptAccess.Write, access);
                Assert.True(m.Memory.TryGetOwner(frame, out FrameOwner owner));
                Assert.Equal(mp.Grant.Granter, owner.DomainId); // never reused while mapped
                Assert.True(d.TryRead((Slot0 + (ulong)slot) << 12, page));
                Assert.Equal(model.Page(mp.Grant.Granter, mp.Grant.Gfn), page);
            }

            for (int gfn = 0; gfn < Pages; gfn++)
            {
                Assert.True(d.TryRead((ulong)gfn << 12, page));
                Assert.Equal(model.Page(a, gfn), page);
            }

            Assert.Equal(model.Mappings.Count(x => x.Grantee == a), d.Grant.MappingCount);
            foreach (ModelGrant g in model.Grants.Where(x => x.Granter == a))
            {
                Assert.Equal(model.Mappings.Any(x => x.Grant == g), shares[a]!.IsForeignAccessInUse(g.Ref));
            }
        }
    }
}
