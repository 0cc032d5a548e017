using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The caller's resolved-frame cache (<c>GrantTableHost.GetPagedFrame</c>): a domain copying to and from more of its own
/// frames than the cache holds makes it grow until they fit (a control domain whose backends copy into many buffers),
/// up to a bound, and entries made stale by EPT changes do not make it grow. Each pass copies a frontend's grant into
/// every one of the backend's frames; a pass that fills no entry resolved every frame from the cache.
/// </summary>
public sealed class FrameCacheTests : IDisposable
{
    private const ulong FirstGfn = 0x10000;
    private readonly TestMachine _m = new(96UL << 20);
    private readonly TestDomain _front; // d1, the granter
    private readonly TestDomain _back;  // d2, the copying domain
    private readonly uint _gref;

    public FrameCacheTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _front.RamPage(5).Fill(0x5A);
        Assert.True(new InProcessGrantShare(_m.Host, _front.Grant).TryGrantForeignAccess(2, 5, readOnly: true, out _gref));
    }

    public void Dispose() => _m.Dispose();

    [Fact]
    public void A_domain_copying_into_more_frames_than_the_cache_holds_grows_it_until_they_fit()
    {
        ulong[] gfns = MapOwnFrames(3 * GrantDomain.FrameCacheInitialSize, stride: 1);

        CopyInto(gfns, 0);
        CopyInto(gfns, 1);
        Assert.Equal(4 * GrantDomain.FrameCacheInitialSize, _back.Grant.FrameCache.Length);

        int fills = _back.Grant.FrameCacheFills;
        CopyInto(gfns, 2);
        Assert.Equal(fills, _back.Grant.FrameCacheFills);
        foreach (ulong gfn in gfns)
        {
            Assert.Equal((byte)0x5A, ByteAt(gfn, 2));
        }
    }

    [Fact]
    public void A_domain_no_copy_has_named_has_no_cache()
    {
        TestDomain idle = _m.AddDomain(3);
        CopyInto(MapOwnFrames(4, stride: 1), 0);
        Assert.Same(GrantDomain.NoFrameCache, idle.Grant.FrameCache);
        Assert.Equal(GrantDomain.FrameCacheInitialSize, _back.Grant.FrameCache.Length);
    }

    [Fact]
    public void Frames_that_collide_at_every_size_grow_it_only_to_its_bound()
    {
        // Frames 64 Ki apart share a slot in every cache up to the bound, so every fill evicts the other's entry.
        ulong[] gfns = MapOwnFrames(2, stride: GrantDomain.FrameCacheMaxSize);
        for (int pass = 0; pass < 2 * GrantDomain.FrameCacheMaxSize; pass++)
        {
            CopyInto(gfns, pass % 64);
        }

        Assert.Equal(GrantDomain.FrameCacheMaxSize, _back.Grant.FrameCache.Length);
    }

    [Fact]
    public void Entries_made_stale_by_EPT_changes_do_not_grow_it()
    {
        ulong[] gfns = MapOwnFrames(3 * GrantDomain.FrameCacheInitialSize, stride: 1);
        for (int pass = 0; pass < 3; pass++)
        {
            for (int i = 0; i < gfns.Length; i++)
            {
                // A change of the backend's EPT before every copy: each copy's entry is stale when the next one fills.
                _back.Ept.Protect(new GuestFrameNumber(3).Address, 1, i % 2 == 0 ? EptAccess.Read | EptAccess.Write : EptAccess.ReadWriteExecute);
                Copy(gfns[i], pass);
            }
        }

        Assert.Equal(GrantDomain.FrameCacheInitialSize, _back.Grant.FrameCache.Length);
    }

    // Frames of the backend's own at FirstGfn, FirstGfn + stride, ...
    private ulong[] MapOwnFrames(int count, ulong stride)
    {
        var gfns = new ulong[count];
        for (int i = 0; i < count; i++)
        {
            gfns[i] = FirstGfn + ((ulong)i * stride);
            MachineFrameNumber frame = _m.Memory.AllocateFrame(new FrameOwner(_back.Id));
            _back.Ept.Map(new GuestFrameNumber(gfns[i]).Address, frame, 1, EptAccess.ReadWriteExecute);
        }

        return gfns;
    }

    // Copies 16 bytes of the grant into every frame at offset 16 * pass, in calls of 16 operations.
    private void CopyInto(ulong[] gfns, int pass)
    {
        var ops = new GnttabCopy[16];
        for (int i = 0; i < gfns.Length; i += ops.Length)
        {
            int n = Math.Min(ops.Length, gfns.Length - i);
            for (int k = 0; k < n; k++)
            {
                ops[k] = Op(gfns[i + k], pass);
            }

            _m.Host.Copy(_back.Grant, ops.AsSpan(0, n));
            for (int k = 0; k < n; k++)
            {
                Assert.Equal((short)GrantStatus.Okay, ops[k].Status);
            }
        }
    }

    private void Copy(ulong gfn, int pass)
    {
        GnttabCopy op = Op(gfn, pass);
        _m.Host.Copy(_back.Grant, ref op);
        Assert.Equal((short)GrantStatus.Okay, op.Status);
    }

    private GnttabCopy Op(ulong gfn, int pass) => new()
    {
        Source = new() { Ref = _gref, DomId = _front.Id, Offset = (ushort)(16 * pass) },
        Dest = new() { Gmfn = gfn, DomId = DomainId.Self, Offset = (ushort)(16 * pass) },
        Len = 16,
        Flags = (ushort)GrantCopyFlags.SourceGref,
    };

    private byte ByteAt(ulong gfn, int pass)
    {
        Span<byte> b = stackalloc byte[1];
        Assert.True(_back.TryRead((gfn << 12) + (ulong)(16 * pass), b));
        return b[0];
    }
}
