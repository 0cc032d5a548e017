using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The machine <see cref="DirtyLogTests"/> and <see cref="DirtyLogReviewTests"/> share: a granter (d1) and a caller
/// (d2) whose EPTs have A/D flags on (dirty logging needs them), the grant tables and their hypercalls, and helpers
/// that build copy operations, run them and read the dirty log.
/// </summary>
public abstract class DirtyLogFixture : IDisposable
{
    private protected const int RamFrames = TestMachine.RamFrames;
    private protected const ulong MapGfn = 0x1000;
    private protected const ulong Buffer = CopyHypercall.Buffer;   // the caller's operations (paging off)
    private protected const ulong BufferGfn = Buffer >> 12;
    private protected const ulong LogFrames = MapGfn + 64;         // harvested range: RAM and the grant-mapping slots
    private protected readonly MachineMemory _memory = new(64UL << 20);
    private protected readonly GrantTableHost _host;
    private protected readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private protected readonly TestDomain _front; // the granter, d1
    private protected readonly TestDomain _back;  // the caller / grantee, d2
    private protected readonly InProcessGrantShare _share;

    private protected DirtyLogFixture()
    {
        _host = new GrantTableHost(new FrameReferences(_memory));
        _front = AddDomain(1);
        _back = AddDomain(2);
        _share = new InProcessGrantShare(_host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _memory.Dispose();

    // A domain whose EPT has A/D flags on (dirty logging needs them), RAM at guest frames [0, RamFrames).
    private protected TestDomain AddDomain(ushort id, bool accessedDirty = true)
    {
        var ept = new EptTables(_memory, new FrameOwner(id), accessedDirtyEnabled: accessedDirty);
        var ram = new MachineFrameNumber[RamFrames];
        for (int i = 0; i < RamFrames; i++)
        {
            ram[i] = _memory.AllocateFrame(new FrameOwner(id));
            ept.Map(new GuestFrameNumber((ulong)i).Address, ram[i], 1, EptAccess.ReadWriteExecute);
            _memory.GetFrame(ram[i]).Fill((byte)(0x10 + i));
        }

        return new TestDomain(id, ept, _host.CreateDomain(id, ept), ram, _memory);
    }

    private protected static void StartLog(params TestDomain[] ds)
    {
        foreach (TestDomain d in ds)
        {
            d.Ept.StartDirtyLog();
        }
    }

    // The guest frames written since the last harvest (or StartDirtyLog), harvested clean.
    private protected static ulong[] Dirty(TestDomain d)
    {
        var bitmap = new ulong[(LogFrames + 63) / 64];
        d.Ept.HarvestDirtyLog(bitmap, new GuestFrameNumber(0), LogFrames);
        var dirty = new List<ulong>();
        for (ulong f = 0; f < LogFrames; f++)
        {
            if ((bitmap[f / 64] & (1UL << (int)(f % 64))) != 0)
            {
                dirty.Add(f);
            }
        }

        return [.. dirty];
    }

    // The same for a caller of a hypercall, less the page holding the operations: the call writes the statuses there
    // through the guest's view (which may cache its translation across a harvest, as a TLB would).
    private protected static ulong[] DirtyBesidesBuffer(TestDomain d) => [.. Dirty(d).Where(f => f != BufferGfn)];

    private protected uint Grant(int gfn, bool readOnly = false, ushort to = 2, InProcessGrantShare? share = null)
    {
        Assert.True((share ?? _share).TryGrantForeignAccess(to, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private protected static GnttabCopy FromGrant(uint gref, ulong gmfn, ushort len = 64, ushort offset = 0, ushort dom = 1) => new()
    {
        Source = new() { Ref = gref, DomId = dom, Offset = offset },
        Dest = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = offset },
        Len = len,
        Flags = (ushort)GrantCopyFlags.SourceGref,
        Status = 99,
    };

    private protected static GnttabCopy ToGrant(ulong gmfn, uint gref, ushort len = 64, ushort offset = 0, ushort dom = 1) => new()
    {
        Source = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = offset },
        Dest = new() { Ref = gref, DomId = dom, Offset = offset },
        Len = len,
        Flags = (ushort)GrantCopyFlags.DestGref,
        Status = 99,
    };

    private protected static GnttabCopy Frames(ulong from, ulong to, ushort len = 64) => new()
    {
        Source = new() { Gmfn = from, DomId = DomainId.Self },
        Dest = new() { Gmfn = to, DomId = DomainId.Self },
        Len = len,
        Status = 99,
    };

    private protected static GnttabCopy GrantToGrant(ushort fromDom, uint from, ushort toDom, uint to, ushort len = 64) => new()
    {
        Source = new() { Ref = from, DomId = fromDom },
        Dest = new() { Ref = to, DomId = toDom },
        Len = len,
        Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref),
        Status = 99,
    };

    private protected short[] Run(params GnttabCopy[] ops)
    {
        _host.Copy(_back.Grant, ops.AsSpan());
        return [.. ops.Select(o => o.Status)];
    }

    private protected short[] Call(GnttabCopy[] ops)
    {
        GnttabCopy[] ran = [.. ops];
        CopyHypercall.Invoke(_dispatcher, _back, ran);
        return [.. ran.Select(o => o.Status)];
    }

    private protected GnttabMapGrantRef Map(uint gref, bool readOnly, ulong at = MapGfn)
    {
        GnttabMapGrantRef op = TestMachine.MapGrant(_host, _back.Grant, 1, gref, at, TestMachine.HostMapFlags(readOnly));
        Assert.Equal(0, op.Status);
        return op;
    }

    private protected short Unmap(uint handle, ulong at = MapGfn)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = at << 12, Handle = handle, Status = 99 };
        _host.UnmapGrantRef(_back.Grant, ref op);
        return op.Status;
    }
}
