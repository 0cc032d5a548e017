using VmmKit.Ept;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>Two domains with RAM at guest frames [0, Pages): a frontend (d1) that grants every page to a backend (d2).</summary>
internal sealed class BenchMachine : IDisposable
{
    public const int Pages = 64;

    public BenchMachine()
    {
        Memory = new MachineMemory(64UL << 20);
        Host = new GrantTableHost(new FrameReferences(Memory));
        Front = AddDomain(1, out FrontRam);
        Back = AddDomain(2, out BackRam);
        var share = new InProcessGrantShare(Host, Front);
        Refs = new uint[Pages];
        for (int i = 0; i < Pages; i++)
        {
            if (!share.TryGrantForeignAccess(2, (ulong)i, readOnly: false, out Refs[i]))
            {
                throw new InvalidOperationException("no grant reference");
            }

            Memory.GetFrame(FrontRam[i]).Fill((byte)i);
        }
    }

    public MachineMemory Memory { get; }
    public GrantTableHost Host { get; }
    public GrantDomain Front { get; }
    public GrantDomain Back { get; }
    public readonly MachineFrameNumber[] FrontRam;
    public readonly MachineFrameNumber[] BackRam;
    public uint[] Refs { get; }

    private GrantDomain AddDomain(ushort id, out MachineFrameNumber[] ram)
    {
        var ept = new EptTables(Memory, new FrameOwner(id));
        ram = new MachineFrameNumber[Pages];
        for (int i = 0; i < Pages; i++)
        {
            ram[i] = Memory.AllocateFrame(new FrameOwner(id));
            ept.Map(new GuestFrameNumber((ulong)i).Address, ram[i], 1, EptAccess.ReadWriteExecute);
        }

        return Host.CreateDomain(id, ept);
    }

    public void Dispose() => Memory.Dispose();
}
