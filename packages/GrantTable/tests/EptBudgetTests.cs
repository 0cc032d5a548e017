using VmmKit.Ept;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The EPT tables a grant mapping needs. The guest chooses where its mappings go (host_addr), and a mapping far from
/// every other needs new tables of the grantee's EPT (about two 4 KiB frames each): 50,000 mappings placed so cost
/// some 100,000 frames, some 400 MiB, at the default maptrack limit some 2 GiB. Xen takes those pages from the
/// domain's paging pool, whose size the toolstack sets (XSA-409 made it bounded for every guest), and a map that finds
/// the pool empty fails (create_grant_p2m_mapping: GNTST_general_error). Here <see cref="EptTables"/> charges its
/// tables to the domain it was made for, so <see cref="MachineMemory.SetLimit"/> on that domain is the pool's bound:
/// these tests hold that it bounds what a guest's grant mappings take, that the map past it fails alone and cleanly,
/// and that the frames come back once the mappings go.
/// </summary>
public sealed class EptBudgetTests : IDisposable
{
    // Each mapping 1 GiB from the one before: a new page directory and page table (two frames) for every one.
    private const ulong Stride = 1UL << 18;
    private const ulong FirstGfn = 1UL << 24;

    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;

    public EptBudgetTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
    }

    public void Dispose() => _m.Dispose();

    private static FrameOwner Back => new(2);

    private GnttabMapGrantRef Map(uint gref, ulong gfn, TestDomain? grantee = null) =>
        _m.MapGrant(grantee ?? _back, 1, gref, gfn, readOnly: true);

    private short Unmap(uint handle, ulong gfn)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, Handle = handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        return op.Status;
    }

    /// <summary>
    /// A backend given a budget of 64 frames beyond what it holds maps one grant at frames 1 GiB apart until a map
    /// fails. The map that finds no frame for a table answers GNTST_general_error and leaves no pin, no handle and no
    /// mapping; the domain holds no frame past its budget; every map before it succeeded; the backend's maps that
    /// need no new table, and other domains' maps, still work; and once the mappings go (unmap, then the flush
    /// and release a hypervisor does after an INVEPT) the budget is whole again.
    /// </summary>
    [Fact]
    public void Grant_mappings_placed_far_apart_stop_at_the_grantees_memory_limit()
    {
        const ulong Budget = 64;
        ulong held = _m.Memory.FramesOwnedBy(Back);
        _m.Memory.SetLimit(Back, held + Budget);
        Assert.True(_share.TryGrantForeignAccess(2, 3, readOnly: true, out uint gref));

        var mapped = new List<(uint Handle, ulong Gfn)>();
        GnttabMapGrantRef failed = default;
        ulong failedGfn = 0;
        for (int i = 0; i < (int)Budget; i++)
        {
            ulong gfn = FirstGfn + ((ulong)i * Stride);
            GnttabMapGrantRef op = Map(gref, gfn);
            if (op.Status != 0)
            {
                failed = op;
                failedGfn = gfn;
                break;
            }

            mapped.Add((op.Handle, gfn));
        }

        // Two frames a mapping: 32 fit in 64 (the shared page-directory-pointer table is already there).
        Assert.Equal((short)GrantStatus.GeneralError, failed.Status);
        Assert.InRange(mapped.Count, (int)(Budget / 2) - 1, (int)(Budget / 2));
        Assert.True(_m.Memory.FramesOwnedBy(Back) <= held + Budget);
        Assert.Equal(mapped.Count, _back.Grant.MappingCount);
        Assert.Equal((uint)mapped.Count, _front.Grant.GetPinCount(gref) >> 8); // a host-read pin (GNTPIN_hstr_inc) each
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(failedGfn), out _, out _));

        // A map next to an existing one needs no table: it still works, and so do other domains' maps.
        GnttabMapGrantRef near = Map(gref, mapped[0].Gfn + 1);
        Assert.Equal(0, near.Status);
        Assert.Equal(0, Unmap(near.Handle, mapped[0].Gfn + 1));
        TestDomain third = _m.AddDomain(3);
        Assert.True(_share.TryGrantForeignAccess(3, 4, readOnly: true, out uint gref3));
        Assert.Equal(0, Map(gref3, FirstGfn, third).Status);

        // The mappings go; after the INVEPT a hypervisor makes, the retired tables return to machine memory.
        foreach ((uint handle, ulong gfn) in mapped)
        {
            Assert.Equal(0, Unmap(handle, gfn));
        }

        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        GuestPhysicalMemory.InvalidateAllContexts(_m.Memory);
        _back.Ept.ReleaseUnusedTableFrames();
        Assert.Equal(held, _m.Memory.FramesOwnedBy(Back));
        Assert.Equal(0, Map(gref, failedGfn).Status);
    }

    /// <summary>
    /// The same guest through the hypercall, in one GNTTABOP_map_grant_ref call of many operations: each operation
    /// past the budget gets its own GNTST_general_error, the call returns 0, and the host throws nothing.
    /// </summary>
    [Fact]
    public void A_map_call_past_the_budget_gives_each_failed_operation_its_status()
    {
        ulong held = _m.Memory.FramesOwnedBy(Back);
        _m.Memory.SetLimit(Back, held + 16);
        Assert.True(_share.TryGrantForeignAccess(2, 3, readOnly: true, out uint gref));

        var dispatcher = new VmmKit.Hypercall.HypercallDispatcher<TestDomain>();
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(dispatcher);
        const int Count = 16;
        const ulong Ops = 0x8000; // guest-physical, in the backend's RAM
        ulong opSize = (ulong)System.Runtime.CompilerServices.Unsafe.SizeOf<GnttabMapGrantRef>();
        for (int i = 0; i < Count; i++)
        {
            GuestValues.Put(_back, Ops + ((ulong)i * opSize), new GnttabMapGrantRef
            {
                HostAddr = (FirstGfn + ((ulong)i * Stride)) << 12,
                Flags = (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly),
                Ref = gref,
                Dom = 1,
            });
        }

        long rc = GrantTableCall.Invoke(dispatcher, _back, (ulong)GrantTableOp.MapGrantRef, Ops, Count, VmmKit.Hypercall.HypercallAbi.Native64, out _);

        Assert.Equal(0, rc);
        int ok = 0;
        for (int i = 0; i < Count; i++)
        {
            short status = GuestValues.Get<GnttabMapGrantRef>(_back, Ops + ((ulong)i * opSize)).Status;
            Assert.True(status is 0 or (short)GrantStatus.GeneralError, $"operation {i}: {status}");
            ok += status == 0 ? 1 : 0;
        }

        Assert.InRange(ok, 7, 8);
        Assert.Equal(ok, _back.Grant.MappingCount);
        Assert.True(_m.Memory.FramesOwnedBy(Back) <= held + 16);
    }
}
