using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

public unsafe class PolicyTests
{
    private sealed class OnlyPrivilegedDomctl : IHypercallPolicy<TestVcpu>
    {
        public List<(HypercallNumber, uint)> Seen { get; } = [];

        public long Authorize(in HypercallCall<TestVcpu> call)
        {
            Seen.Add((call.Number, call.SubOp));
            return call.Number == HypercallNumber.Domctl && !call.Caller.Privileged ? XenErrno.EPERM.Negated() : 0;
        }
    }

    private static long Domctl(ref HypercallCall<TestVcpu> call) => 0;

    [Fact]
    public void Policy_refusal_is_returned_and_the_handler_does_not_run()
    {
        int runs = 0;
        var policy = new OnlyPrivilegedDomctl();
        var d = new HypercallDispatcher<TestVcpu> { Policy = policy };
        d.Register(HypercallNumber.Domctl, (ref HypercallCall<TestVcpu> c) => { runs++; return 0; });

        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Domctl };
        d.Dispatch(new TestVcpu(5), ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16));
        Assert.Equal(-1L, (long)regs.Rax);
        Assert.Equal(0, runs);

        regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Domctl };
        d.Dispatch(new TestVcpu(0, privileged: true), ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16));
        Assert.Equal(0L, (long)regs.Rax);
        Assert.Equal(1, runs);
    }

    [Fact]
    public void Unregistered_hypercalls_get_enosys_before_the_policy_is_asked()
    {
        var policy = new OnlyPrivilegedDomctl();
        var d = new HypercallDispatcher<TestVcpu> { Policy = policy };
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Domctl };
        d.Dispatch(new TestVcpu(5), ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16));
        Assert.Equal(-38L, (long)regs.Rax);
        Assert.Empty(policy.Seen);
    }

    [Fact]
    public void Policy_sees_the_sub_operation()
    {
        var policy = new OnlyPrivilegedDomctl();
        var d = new HypercallDispatcher<TestVcpu> { Policy = policy };
        d.RegisterSubOp(HypercallNumber.XenVersion, 9, (ref HypercallCall<TestVcpu> c) => 0);
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.XenVersion, Rbx = 9 };
        d.Dispatch(new TestVcpu(5), ref regs, GuestX86Mode.Protected32, 0, new FlatGuestMemory(0, 16));
        Assert.Equal((HypercallNumber.XenVersion, 9u), Assert.Single(policy.Seen));
    }

    [Fact]
    public void Privilege_table_policy_refuses_unprivileged_callers()
    {
        var policy = new HypercallPrivilegePolicy<TestVcpu>(v => v.Privileged);
        var d = new HypercallDispatcher<TestVcpu> { Policy = policy };
        d.Register(HypercallNumber.Domctl, &Domctl);
        d.Register(HypercallNumber.Sysctl, &Domctl);
        d.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Version, &Domctl);
        d.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Commandline, &Domctl);
        d.Register(HypercallNumber.SchedOp, &Domctl);

        long Call(TestVcpu v, HypercallNumber n, ulong arg0 = 0)
        {
            var regs = new HypercallRegisters { Rax = (ulong)n, Rdi = arg0 };
            d.Dispatch(v, ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16));
            return (long)regs.Rax;
        }

        var guest = new TestVcpu(3);
        var dom0 = new TestVcpu(0, privileged: true);
        Assert.Equal(-1, Call(guest, HypercallNumber.Domctl));
        Assert.Equal(-1, Call(guest, HypercallNumber.Sysctl));
        Assert.Equal(0, Call(dom0, HypercallNumber.Domctl));
        Assert.Equal(0, Call(guest, HypercallNumber.SchedOp));
        Assert.Equal(0, Call(guest, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Version));
        Assert.Equal(-1, Call(guest, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Commandline));
        Assert.Equal(0, Call(dom0, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Commandline));

        policy.Set(HypercallNumber.SchedOp, HypercallPrivilege.Denied);
        Assert.Equal(-1, Call(dom0, HypercallNumber.SchedOp));
        policy.SetSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Commandline, HypercallPrivilege.Any);
        Assert.Equal(0, Call(guest, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Commandline));
    }
}
