using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// <c>__HYPERVISOR_grant_table_op</c> through VmmKit.Hypercall's dispatcher: arguments and structures in guest
/// memory, both ABIs, the HVM command set, errnos and continuations.
/// </summary>
public sealed class HypercallTests : IDisposable
{
    private const ulong Buffer = 20UL << 12;   // guest-physical buffer in the caller's RAM (paging off)
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly InProcessGrantShare _share;

    private sealed class Resolver : IGrantTableCallerResolver<TestDomain>
    {
        public GrantDomain? GetDomain(TestDomain caller) => caller.Dead ? null : caller.Grant;

        public bool IsPrivileged(TestDomain caller) => caller.Id == 0;
    }

    public HypercallTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new Resolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    private long Call(TestDomain caller, ulong cmd, ulong uop, ulong count, HypercallAbi abi = HypercallAbi.Native64) =>
        Call(caller, cmd, uop, count, abi, out _);

    private long Call(TestDomain caller, ulong cmd, ulong uop, ulong count, HypercallAbi abi, out HypercallArguments after)
    {
        HypercallArguments args = default;
        args[0] = cmd;
        args[1] = uop;
        args[2] = count;
        HypercallCall<TestDomain> call = _dispatcher.CreateCall(caller, (uint)HypercallNumber.GrantTableOp, abi, caller.Virtual, args);
        long rc = _dispatcher.Invoke(ref call);
        after = call.Arguments;
        return rc;
    }

    private static void Put<T>(TestDomain d, ulong gpa, T value) where T : unmanaged =>
        Assert.True(d.TryWrite(gpa, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value))));

    private static T Get<T>(TestDomain d, ulong gpa) where T : unmanaged
    {
        T value = default;
        Assert.True(d.TryRead(gpa, MemoryMarshal.AsBytes(new Span<T>(ref value))));
        return value;
    }

    [Theory]
    [InlineData(GrantTableOp.DumpTable)]
    [InlineData(GrantTableOp.Transfer)]
    [InlineData(GrantTableOp.UnmapAndReplace)]
    [InlineData(GrantTableOp.GetStatusFrames)]
    [InlineData(GrantTableOp.CacheFlush)]
    [InlineData((GrantTableOp)13)]
    [InlineData((GrantTableOp)(0x1000 | 5))]
    public void Commands_Xen_does_not_offer_HVM_guests_return_ENOSYS(GrantTableOp cmd) =>
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(_back, (ulong)cmd, Buffer, 1));

    [Fact]
    public void Bad_counts_and_pointers()
    {
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.Copy, Buffer, 0x8000_0000));
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.SetupTable, Buffer, 2));
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.QuerySize, Buffer, 0));
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.MapGrantRef, 0x7000_0000_0000, 1));
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.QuerySize, 0x7000_0000_0000, 1));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, 0x7000_0000_0000, 0));
        _back.Dead = true;
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(_back, (ulong)GrantTableOp.QuerySize, Buffer, 1));
    }

    [Fact]
    public void Map_copy_unmap_through_the_hypercall()
    {
        _front.RamPage(5).Fill(0x3C);
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        Put(_back, Buffer, new GnttabMapGrantRef { HostAddr = 0x1000UL << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = 1 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.MapGrantRef, Buffer, 1));
        var map = Get<GnttabMapGrantRef>(_back, Buffer);
        Assert.Equal(0, map.Status);
        Assert.Equal(_front.Ram[5].Address, map.DevBusAddr);

        var copy = new GnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1, Offset = 0 },
            Dest = new() { Gmfn = 7, DomId = DomainId.Self, Offset = 8 },
            Len = 16,
            Flags = (ushort)GrantCopyFlags.SourceGref,
        };
        Put(_back, Buffer + 0x100, copy);
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer + 0x100, 1));
        Assert.Equal(0, Get<GnttabCopy>(_back, Buffer + 0x100).Status);
        Assert.Equal(0x3C, _back.RamPage(7)[8]);

        Put(_back, Buffer + 0x200, new GnttabUnmapGrantRef { HostAddr = 0x1000UL << 12, Handle = map.Handle, Status = 99 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.UnmapGrantRef, Buffer + 0x200, 1));
        Assert.Equal(0, Get<GnttabUnmapGrantRef>(_back, Buffer + 0x200).Status);
        Assert.False(_share.IsForeignAccessInUse(gref));
    }

    [Fact]
    public void A_32_bit_caller_uses_the_compat_layouts()
    {
        _front.RamPage(5).Fill(0x44);
        Assert.True(_share.TryGrantForeignAccess(2, 5, true, out uint gref));
        var copy = new CompatGnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1 },
            Dest = new() { Gmfn = 9, DomId = DomainId.Self, Offset = 1 },
            Len = 4,
            Flags = (ushort)GrantCopyFlags.SourceGref,
        };
        Put(_back, Buffer, copy);
        Put(_back, Buffer + 24, copy with { Len = 5000 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2, HypercallAbi.Compat32));
        Assert.Equal(0, Get<CompatGnttabCopy>(_back, Buffer).Status);
        Assert.Equal((short)GrantStatus.BadCopyArg, Get<CompatGnttabCopy>(_back, Buffer + 24).Status);
        Assert.Equal(0x44, _back.RamPage(9)[4]);

        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 1, new Ept.GuestFrameNumber(0x2001)));
        Put(_back, Buffer + 0x100, new CompatGnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = (uint)(Buffer + 0x200) });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x100, 1, HypercallAbi.Compat32));
        Assert.Equal(0, Get<CompatGnttabSetupTable>(_back, Buffer + 0x100).Status);
        Assert.Equal(uint.MaxValue, Get<uint>(_back, Buffer + 0x200));
        Assert.Equal(0x2001u, Get<uint>(_back, Buffer + 0x204));

        Put(_back, Buffer + 0x300, new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = Buffer + 0x400 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x300, 1));
        Assert.Equal(0x2001UL, Get<ulong>(_back, Buffer + 0x408));
        Put(_back, Buffer + 0x300, new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = 0x7000_0000_0000 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x300, 1));
        Assert.Equal((short)GrantStatus.BadVirtAddr, Get<GnttabSetupTable>(_back, Buffer + 0x300).Status);
    }

    [Fact]
    public void Version_and_size_queries()
    {
        Put(_back, Buffer, new GnttabSetVersion { Version = 2 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetVersion, Buffer, 1));
        Put(_back, Buffer + 8, new GnttabGetVersion { Dom = DomainId.Self });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.GetVersion, Buffer + 8, 1));
        Assert.Equal(2u, Get<GnttabGetVersion>(_back, Buffer + 8).Version);
        Put(_back, Buffer + 8, new GnttabGetVersion { Dom = 1 });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(_back, (ulong)GrantTableOp.GetVersion, Buffer + 8, 1));
        Put(_back, Buffer, new GnttabSetVersion { Version = 7 });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.SetVersion, Buffer, 1));
        Assert.Equal(2u, Get<GnttabSetVersion>(_back, Buffer).Version);
        Put(_back, Buffer + 16, new GnttabQuerySize { Dom = DomainId.Self });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.QuerySize, Buffer + 16, 1));
        Assert.Equal((1u, 64u), (Get<GnttabQuerySize>(_back, Buffer + 16).NrFrames, Get<GnttabQuerySize>(_back, Buffer + 16).MaxNrFrames));
    }

    [Fact]
    public void Long_batches_continue_where_they_stopped()
    {
        const int count = 5;
        for (int i = 0; i < count; i++)
        {
            Put(_back, Buffer + ((ulong)i * 40), new GnttabCopy
            {
                Source = new() { Gmfn = 3, DomId = DomainId.Self },
                Dest = new() { Gmfn = 4, DomId = DomainId.Self, Offset = (ushort)i },
                Len = 1,
                Status = 99,
            });
        }

        int checks = 0;
        _dispatcher.PreemptCheck = _ => ++checks % 2 == 0; // preempt at every other check
        ulong cmd = (ulong)GrantTableOp.Copy, uop = Buffer, n = count;
        int rounds = 0;
        while (true)
        {
            long rc = Call(_back, cmd, uop, n, HypercallAbi.Native64, out HypercallArguments after);
            rounds++;
            if (rc == 0)
            {
                break;
            }

            Assert.Equal((long)HypercallNumber.GrantTableOp, rc);
            Assert.Equal(cmd, after[0]);
            Assert.True(after[1] > uop && after[2] < n);
            Assert.Equal(uop + ((n - after[2]) * 40), after[1]);
            (uop, n) = (after[1], after[2]);
        }

        Assert.True(rounds > 1);
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(0, Get<GnttabCopy>(_back, Buffer + ((ulong)i * 40)).Status);
        }
    }

    [Fact]
    public void A_copy_into_the_operation_array_changes_the_operations_that_follow_as_in_Xen()
    {
        // gnttab_copy reads each operation just before it runs it: operation 0 overwrites operation 1 in the array
        // with a copy to frame 10 instead of frame 11, and that is what runs.
        const ulong frames = 30; // where the replacement operation waits, in frame 30 of the caller
        _back.RamPage(9).Fill(0x5D);
        GnttabCopy Op(ulong from, ushort fromOffset, ulong to, ushort toOffset, ushort len) => new()
        {
            Source = new() { Gmfn = from, DomId = DomainId.Self, Offset = fromOffset },
            Dest = new() { Gmfn = to, DomId = DomainId.Self, Offset = toOffset },
            Len = len,
            Status = 99,
        };
        Put(_back, frames << 12, Op(9, 0, 10, 0, 4));
        Put(_back, Buffer, Op(frames, 0, Buffer >> 12, 40, 40));
        Put(_back, Buffer + 40, Op(9, 0, 11, 0, 4));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2));
        Assert.Equal((short)0, Get<GnttabCopy>(_back, Buffer).Status);
        Assert.Equal((short)0, Get<GnttabCopy>(_back, Buffer + 40).Status);
        Assert.Equal(10UL, Get<GnttabCopy>(_back, Buffer + 40).Dest.Gmfn);
        Assert.Equal([0x5D, 0x5D, 0x5D, 0x5D, 0], _back.RamPage(10)[..5].ToArray());
        Assert.Equal(new byte[5], _back.RamPage(11)[..5].ToArray());
    }

    [Fact]
    public void A_status_that_cannot_be_written_fails_the_call_right_after_its_operation_ran()
    {
        // gnttab_copy: the operation runs, then its status cannot be copied back: -EFAULT, and no later operation runs.
        _back.RamPage(9).Fill(0x6E);
        for (int i = 0; i < 2; i++)
        {
            Put(_back, Buffer + ((ulong)i * 40), new GnttabCopy
            {
                Source = new() { Gmfn = 9, DomId = DomainId.Self },
                Dest = new() { Gmfn = (ulong)(12 + i), DomId = DomainId.Self },
                Len = 8,
                Status = 99,
            });
        }

        _back.Ept.Protect(new GuestPhysicalAddress(Buffer), 1, EptAccess.Read); // the array is readable, not writable
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2));
        Assert.Equal(0x6E, _back.RamPage(12)[7]);
        Assert.Equal(0, _back.RamPage(13)[0]);
        Assert.Equal((short)99, Get<GnttabCopy>(_back, Buffer).Status);
    }
}
