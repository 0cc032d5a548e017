using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

public unsafe class DispatcherTests
{
    private static long ReturnsSeven(ref HypercallCall<TestVcpu> call) => 7;
    private static long VersionOp(ref HypercallCall<TestVcpu> call) => 0x0004_0011;
    private static long PagesizeOp(ref HypercallCall<TestVcpu> call) => 4096;
    private static long AddToPhysmap(ref HypercallCall<TestVcpu> call) => 100 + (long)(call.Argument(0) >> 6);

    private static long Run(HypercallDispatcher<TestVcpu> d, HypercallNumber number, ulong arg0 = 0, TestVcpu? vcpu = null)
    {
        var regs = new HypercallRegisters { Rax = (ulong)number, Rdi = arg0 };
        d.Dispatch(vcpu ?? new TestVcpu(1), ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16));
        return (long)regs.Rax;
    }

    [Fact]
    public void Unregistered_hypercalls_get_enosys()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        Assert.Equal(-38, Run(d, HypercallNumber.XenVersion));
        Assert.Equal(-38, Run(d, HypercallNumber.Iret));
        Assert.Equal(-38, Run(d, (HypercallNumber)63));
        Assert.Equal(-38, Run(d, (HypercallNumber)64));
        Assert.Equal(-38, Run(d, (HypercallNumber)0xFFFF_FFFF));
        Assert.True(d.IsRegistered(HypercallNumber.Multicall));
        Assert.False(d.IsRegistered(HypercallNumber.XenVersion));
    }

    [Fact]
    public void Function_pointer_and_delegate_handlers_are_called_by_number()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.Register(HypercallNumber.ConsoleIo, &ReturnsSeven);
        d.Register(HypercallNumber.SchedOp, (ref HypercallCall<TestVcpu> call) => call.Caller.DomainId * 10);
        Assert.Equal(7, Run(d, HypercallNumber.ConsoleIo));
        Assert.Equal(30, Run(d, HypercallNumber.SchedOp, vcpu: new TestVcpu(3)));
        d.Unregister(HypercallNumber.ConsoleIo);
        Assert.Equal(-38, Run(d, HypercallNumber.ConsoleIo));
    }

    [Fact]
    public void Sub_operations_dispatch_on_the_first_argument()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Version, &VersionOp);
        d.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Pagesize, &PagesizeOp);
        Assert.Equal(0x0004_0011, Run(d, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Version));
        Assert.Equal(4096, Run(d, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Pagesize));
        // Unregistered sub-operations, in and beyond the sub-table, are -ENOSYS.
        Assert.Equal(-38, Run(d, HypercallNumber.XenVersion, (ulong)XenVersionCommand.CompileInfo));
        Assert.Equal(-38, Run(d, HypercallNumber.XenVersion, 500));
        // cmd is an unsigned int: upper bits of RDI do not select another sub-operation.
        Assert.Equal(4096, Run(d, HypercallNumber.XenVersion, (1UL << 40) | 7));
        Assert.True(d.IsRegistered(HypercallNumber.XenVersion, 7));
        Assert.False(d.IsRegistered(HypercallNumber.XenVersion, 6));
    }

    [Fact]
    public void Memory_op_sub_operation_is_masked_with_memop_cmd_mask()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.RegisterSubOp(HypercallNumber.MemoryOp, (uint)MemoryOp.AddToPhysmap, &AddToPhysmap);
        // start extent 5 in bits 6 and up (MEMOP_EXTENT_SHIFT), as a continuation would pass it.
        Assert.Equal(105, Run(d, HypercallNumber.MemoryOp, (5UL << 6) | 7));
    }

    [Fact]
    public void Whole_handler_replaces_sub_operations_and_vice_versa()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.RegisterSubOp(HypercallNumber.XenVersion, 0, &VersionOp);
        d.Register(HypercallNumber.XenVersion, &ReturnsSeven);
        Assert.Equal(7, Run(d, HypercallNumber.XenVersion, 0));
        d.RegisterSubOp(HypercallNumber.XenVersion, 7, &PagesizeOp);
        Assert.Equal(-38, Run(d, HypercallNumber.XenVersion, 0));
        Assert.Equal(4096, Run(d, HypercallNumber.XenVersion, 7));
    }

    [Fact]
    public void Registration_rejects_numbers_outside_the_table()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Register((HypercallNumber)64, &ReturnsSeven));
        Assert.Throws<ArgumentOutOfRangeException>(() => d.RegisterSubOp(HypercallNumber.XenVersion, HypercallDispatcher<TestVcpu>.MaxSubOps, &ReturnsSeven));
    }

    [Fact]
    public void Invoke_runs_a_host_built_call()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.Register(HypercallNumber.ConsoleIo, &ReturnsSeven);
        HypercallArguments args = default;
        var call = d.CreateCall(new TestVcpu(0), (uint)HypercallNumber.ConsoleIo, HypercallAbi.Native64, new FlatGuestMemory(0, 16), args);
        Assert.Equal(7, d.Invoke(ref call));
    }
}
