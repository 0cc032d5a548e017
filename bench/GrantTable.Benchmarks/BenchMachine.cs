using VmmKit.Ept;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>Two domains with RAM at guest frames [0, pages): a frontend (d1) that grants every page to a backend (d2).</summary>
internal sealed class BenchMachine : IDisposable
{
    /// <summary>Pages per domain for the cache-hot runs (both sides fit in a core's L2 cache).</summary>
    public const int Pages = 64;

    public BenchMachine(int pages = Pages, int idleDomains = 0)
    {
        PageCount = pages;
        Memory = new MachineMemory(((ulong)pages * 2 * 4096) + ((ulong)idleDomains * 2 * 4096) + (32UL << 20));
        Host = new GrantTableHost(new FrameReferences(Memory));
        Front = AddDomain(1, out FrontRam);
        Back = AddDomain(2, out BackRam);
        for (int i = 0; i < idleDomains; i++)
        {
            Host.CreateDomain((ushort)(3 + i), new EptTables(Memory, new FrameOwner((ushort)(3 + i))));
        }
        uint frames = (uint)((pages + 8 + GrantEntryV1.PerFrame - 1) / GrantEntryV1.PerFrame);
        if (Host.SetupTable(Front, false, VmmKit.Hypercall.DomainId.Self, frames, new ulong[frames]) != GrantStatus.Okay)
        {
            throw new InvalidOperationException("cannot grow the grant table");
        }

        var share = new InProcessGrantShare(Host, Front);
        Refs = new uint[pages];
        for (int i = 0; i < pages; i++)
        {
            if (!share.TryGrantForeignAccess(2, (ulong)i, readOnly: false, out Refs[i]))
            {
                throw new InvalidOperationException("no grant reference");
            }

            Memory.GetFrame(FrontRam[i]).Fill((byte)i);
        }
    }

    public int PageCount { get; }

    public MachineMemory Memory { get; }
    public GrantTableHost Host { get; }
    public GrantDomain Front { get; }
    public GrantDomain Back { get; }
    public readonly MachineFrameNumber[] FrontRam;
    public readonly MachineFrameNumber[] BackRam;
    public uint[] Refs { get; }

    /// <summary>
    /// Maps <paramref name="count"/> more frames into the backend at guest frames [PageCount, PageCount + count) and
    /// returns the guest-physical address of the first (for what a hypercall reads from guest memory).
    /// </summary>
    public ulong AddBackPages(int count)
    {
        for (int i = 0; i < count; i++)
        {
            MachineFrameNumber frame = Memory.AllocateFrame(new FrameOwner(Back.Id));
            Back.Ept.Map(new GuestFrameNumber((ulong)(PageCount + i)).Address, frame, 1, EptAccess.ReadWriteExecute);
        }

        return new GuestFrameNumber((ulong)PageCount).Address.Value;
    }

    private GrantDomain AddDomain(ushort id, out MachineFrameNumber[] ram)
    {
        var ept = new EptTables(Memory, new FrameOwner(id));
        ram = new MachineFrameNumber[PageCount];
        for (int i = 0; i < PageCount; i++)
        {
            ram[i] = Memory.AllocateFrame(new FrameOwner(id));
            ept.Map(new GuestFrameNumber((ulong)i).Address, ram[i], 1, EptAccess.ReadWriteExecute);
        }

        return Host.CreateDomain(id, ept);
    }

    public void Dispose() => Memory.Dispose();
}
