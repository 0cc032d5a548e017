using VmmKit.Backends.Block;
using VmmKit.Backends.Console;
using VmmKit.Ept;
using VmmKit.EventChannel;
using VmmKit.GrantTable;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;

namespace VmmKit.Backends.Tests;

/// <summary>
/// Two in-process domains on the packages' in-process client sides: d0 (the backend: event channels, a grant-mapping
/// window, a privileged XenStore connection) and d1 (the frontend: RAM frames it grants, its own event channels and an
/// unprivileged XenStore connection), over one XenStore daemon.
/// </summary>
internal sealed class TestWorld : IAsyncDisposable
{
    public const int RamFrames = 128;

    public TestWorld()
    {
        Memory = new MachineMemory(64UL << 20);
        Grants = new GrantTableHost(new FrameReferences(Memory));
        Events = new EventChannelHypervisor();
        Dom0Events = new EventChannelHostDomain(Events, 0, isControlDomain: true);
        Dom1Events = new EventChannelHostDomain(Events, 1);
        var ept0 = new EptTables(Memory, new FrameOwner(0));
        Dom0Grants = Grants.CreateDomain(0, ept0);
        Mapper = new InProcessGrantMapper(Grants, Dom0Grants, new GuestFrameNumber(0x10000), 1024);
        var ept1 = new EptTables(Memory, new FrameOwner(1));
        Ram = new MachineFrameNumber[RamFrames];
        for (int i = 0; i < RamFrames; i++)
        {
            Ram[i] = Memory.AllocateFrame(new FrameOwner(1));
            ept1.Map(new GuestFrameNumber((ulong)i).Address, Ram[i], 1, EptAccess.ReadWriteExecute);
        }

        Dom1Grants = Grants.CreateDomain(1, ept1);
        Share = new InProcessGrantShare(Grants, Dom1Grants);
        Daemon = new XenStoreDaemon();
        Store0 = new XenStoreClient(Daemon.Connect(0));
        Store1 = new XenStoreClient(Daemon.Connect(1));
    }

    public MachineMemory Memory { get; }
    public GrantTableHost Grants { get; }
    public EventChannelHypervisor Events { get; }
    public EventChannelHostDomain Dom0Events { get; }
    public EventChannelHostDomain Dom1Events { get; }
    public GrantDomain Dom0Grants { get; }
    public GrantDomain Dom1Grants { get; }
    public InProcessGrantMapper Mapper { get; }
    public InProcessGrantShare Share { get; }
    public MachineFrameNumber[] Ram { get; }
    public XenStoreDaemon Daemon { get; }
    public XenStoreClient Store0 { get; }
    public XenStoreClient Store1 { get; }

    public Span<byte> Page(int gfn) => Memory.GetFrame(Ram[gfn]);

    /// <summary>Local pages of d0 for grant copy: frames it owns, at guest frames 0x20000 up of its own space.</summary>
    public IBackendBuffer NewCopyBuffer(int pages)
    {
        var frames = new MachineFrameNumber[pages];
        for (int i = 0; i < pages; i++)
        {
            frames[i] = Memory.AllocateFrame(new FrameOwner(0));
            Dom0Grants.Ept.Map(new GuestFrameNumber((ulong)(0x20000 + (_nextLocal + i))).Address, frames[i], 1, EptAccess.ReadWriteExecute);
        }

        var buffer = new LocalBuffer(this, frames, 0x20000 + _nextLocal);
        _nextLocal += pages;
        return buffer;
    }

    private int _nextLocal;

    private sealed class LocalBuffer(TestWorld w, MachineFrameNumber[] frames, int firstGfn) : IBackendBuffer
    {
        public int PageCount => frames.Length;
        public ulong Frame(int index) => (ulong)(firstGfn + index);
        public Span<byte> Page(int index) => w.Memory.GetFrame(frames[index]);
    }

    /// <summary>The toolstack's seeding of a reserved grant (xc_dom_gnttab_seed): entry <paramref name="gref"/> gives d0 frame <paramref name="gfn"/>.</summary>
    public unsafe void SeedReservedGrant(uint gref, int gfn)
    {
        var e = (GrantEntryV1*)(Memory.GetFramePointer(Dom1Grants.GetSharedFrame(0)) + (gref * GrantEntryV1.Size));
        e->Frame = (uint)gfn;
        e->DomId = 0;
        Volatile.Write(ref e->Flags, (ushort)GrantEntryFlags.PermitAccess);
    }

    public async ValueTask DisposeAsync()
    {
        await Store0.DisposeAsync();
        await Store1.DisposeAsync();
        await Daemon.DisposeAsync();
        Dom0Events.Dispose();
        Dom1Events.Dispose();
        Memory.Dispose();
    }

    public static async Task Until(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException(what);
            await Task.Delay(2);
        }
    }

    public static void Until(Func<bool> condition, string what) =>
        Until(() => Task.FromResult(condition()), what).GetAwaiter().GetResult();
}
