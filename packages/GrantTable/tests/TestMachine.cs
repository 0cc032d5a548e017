using VmmKit.Ept;
using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A small machine for grant-table tests: machine memory, frame reference counts, the grant tables, and
/// domains whose RAM is guest frames [0, RamFrames) mapped read/write in their EPT.
/// </summary>
internal sealed class TestMachine : IDisposable
{
    public const int RamFrames = 64;

    public TestMachine(ulong bytes = 64UL << 20, GrantTableLimits? hostLimits = null)
    {
        Memory = new MachineMemory(bytes);
        Frames = new FrameReferences(Memory);
        Host = hostLimits is { } l ? new GrantTableHost(Frames, l) : new GrantTableHost(Frames);
    }

    public MachineMemory Memory { get; }
    public FrameReferences Frames { get; }
    public GrantTableHost Host { get; }

    /// <summary>
    /// <c>GNTTABOP_map_grant_ref</c> by <paramref name="grantee"/> of <paramref name="granter"/>'s grant
    /// <paramref name="gref"/> at guest frame <paramref name="gfn"/> (a host mapping, read-only when asked).
    /// </summary>
    public GnttabMapGrantRef MapGrant(TestDomain grantee, ushort granter, uint gref, ulong gfn, bool readOnly = false) =>
        MapGrant(Host, grantee.Grant, granter, gref, gfn, HostMapFlags(readOnly));

    /// <summary>As <see cref="MapGrant(TestDomain, ushort, uint, ulong, bool)"/> with the map flags as given (refused ones too).</summary>
    public GnttabMapGrantRef MapGrant(TestDomain grantee, ushort granter, uint gref, ulong gfn, GrantMapFlags flags) =>
        MapGrant(Host, grantee.Grant, granter, gref, gfn, flags);

    /// <summary>The one place a test builds a <c>GNTTABOP_map_grant_ref</c> operation, for fixtures with a host of their own.</summary>
    public static GnttabMapGrantRef MapGrant(GrantTableHost host, GrantDomain grantee, ushort granter, uint gref, ulong gfn, GrantMapFlags flags)
    {
        var op = new GnttabMapGrantRef { HostAddr = gfn << 12, Flags = (uint)flags, Ref = gref, Dom = granter };
        host.MapGrantRef(grantee, ref op);
        return op;
    }

    /// <summary><c>GNTMAP_host_map</c>, with <c>GNTMAP_readonly</c> when asked.</summary>
    public static GrantMapFlags HostMapFlags(bool readOnly) => GrantMapFlags.HostMap | (readOnly ? GrantMapFlags.ReadOnly : 0);

    public Dictionary<ushort, TestDomain> Domains { get; } = [];

    public TestDomain AddDomain(ushort id, GrantTableLimits? limits = null)
    {
        var ept = new EptTables(Memory, new FrameOwner(id));
        var ram = new MachineFrameNumber[RamFrames];
        for (int i = 0; i < RamFrames; i++)
        {
            ram[i] = Memory.AllocateFrame(new FrameOwner(id));
            ept.Map(new GuestFrameNumber((ulong)i).Address, ram[i], 1, EptAccess.ReadWriteExecute);
        }

        var d = new TestDomain(id, ept, Host.CreateDomain(id, ept, limits), ram, Memory);
        Domains[id] = d;
        return d;
    }

    /// <summary>Domain death as a hypervisor does it: grant state first, then every RAM frame through the reference counts.</summary>
    public void Kill(TestDomain d)
    {
        Host.DestroyDomain(d.Grant);
        foreach (MachineFrameNumber f in d.Ram)
        {
            Frames.Free(f);
        }

        d.Ept.Dispose();
        d.Dead = true;
        Domains.Remove(d.Id);
    }

    // Allocates frames for d3 until the machine hands out `wanted` again (the allocator reuses freed frames), then
    // gives back the others so that memory is not exhausted.
    public bool Reallocate(MachineFrameNumber wanted, byte fill)
    {
        var owner = new FrameOwner(3);
        var others = new List<MachineFrameNumber>();
        bool found = false;
        while (Memory.TryAllocateFrame(owner, out MachineFrameNumber f))
        {
            if (f.Value == wanted.Value)
            {
                Memory.GetFrame(f).Fill(fill);
                found = true;
                break;
            }

            others.Add(f);
        }

        foreach (MachineFrameNumber f in others)
        {
            Memory.FreeFrame(f);
        }

        return found;
    }

    public void Dispose() => Memory.Dispose();
}

internal sealed class TestDomain(ushort id, EptTables ept, GrantDomain grant, MachineFrameNumber[] ram, MachineMemory memory)
{
    public ushort Id { get; } = id;
    public EptTables Ept { get; } = ept;
    public GrantDomain Grant { get; } = grant;
    public MachineFrameNumber[] Ram { get; } = ram;
    public bool Dead { get; set; }

    public GuestPhysicalMemory Physical => new(memory, Ept.Pointer);

    public Span<byte> RamPage(int gfn) => memory.GetFrame(Ram[gfn]);

    /// <summary>
    /// Makes v2 entry <paramref name="gref"/> of this domain's table a sub-page grant (GTF_sub_page) of
    /// <paramref name="length"/> bytes from <paramref name="offset"/>, as a granter writes it.
    /// </summary>
    public unsafe void MakeSubPage(uint gref, ushort offset, ushort length)
    {
        var e = (GrantEntryV2*)memory.GetFramePointer(Grant.GetSharedFrame(0)) + gref;
        e->SubPageOffset = offset;
        e->SubPageLength = length;
        e->Flags |= (ushort)GrantEntryFlags.SubPage;
    }

    /// <summary>Reads guest-physical memory through the EPT as the guest would (false on an EPT fault).</summary>
    public bool TryRead(ulong gpa, Span<byte> bytes) => Physical.TryRead(new GuestPhysicalAddress(gpa), bytes, out _);

    public bool TryWrite(ulong gpa, ReadOnlySpan<byte> bytes) => Physical.TryWrite(new GuestPhysicalAddress(gpa), bytes, out _);

    /// <summary>The guest-virtual view a hypercall handler gets (paging off: virtual = physical).</summary>
    public IGuestVirtualMemory Virtual => new PagingDisabledGuestMemory(Physical);
}

/// <summary>Typed reads and writes of a test domain's guest-physical memory, each asserted to succeed.</summary>
internal static class GuestValues
{
    public static void Put<T>(TestDomain d, ulong gpa, T value) where T : unmanaged =>
        Assert.True(d.TryWrite(gpa, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value))));

    public static T Get<T>(TestDomain d, ulong gpa) where T : unmanaged
    {
        T value = default;
        Assert.True(d.TryRead(gpa, MemoryMarshal.AsBytes(new Span<T>(ref value))));
        return value;
    }
}

/// <summary>
/// The grant-table hypercalls' view of test domains: a dead domain has no table; a caller is privileged when
/// <paramref name="privileged"/> says so (by default, domain 0 is).
/// </summary>
internal sealed class TestResolver(Func<TestDomain, bool>? privileged = null) : IGrantTableCallerResolver<TestDomain>
{
    public GrantDomain? GetDomain(TestDomain caller) => caller.Dead ? null : caller.Grant;

    public bool IsPrivileged(TestDomain caller) => privileged?.Invoke(caller) ?? caller.Id == 0;
}

/// <summary><c>__HYPERVISOR_grant_table_op(cmd, uop, count)</c> made by a test domain (paging off) through a dispatcher.</summary>
internal static class GrantTableCall
{
    public static long Invoke(HypercallDispatcher<TestDomain> dispatcher, TestDomain caller, ulong cmd, ulong uop, ulong count, HypercallAbi abi, out HypercallArguments after)
    {
        HypercallArguments args = default;
        args[0] = cmd;
        args[1] = uop;
        args[2] = count;
        HypercallCall<TestDomain> call = dispatcher.CreateCall(caller, (uint)HypercallNumber.GrantTableOp, abi, caller.Virtual, args);
        long rc = dispatcher.Invoke(ref call);
        after = call.Arguments;
        return rc;
    }
}
