using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

public unsafe class ContinuationTests
{
    // A long operation: arg0 = first unit, arg1 = end; does 3 units per entry, then asks to be re-entered.
    private static long Scrub(ref HypercallCall<TestVcpu> call)
    {
        ulong next = call.Argument(0), end = call.Argument(1);
        for (int done = 0; next < end; next++, done++)
        {
            if (done == 3)
                return call.CreateContinuation(HypercallNumber.MemoryOp, [next, end]);
            call.Caller.Work++;
        }
        return 0;
    }

    [Theory]
    [InlineData(GuestX86Mode.Long64)]
    [InlineData(GuestX86Mode.Protected32)]
    public void Handler_is_re_entered_with_updated_registers_until_done(GuestX86Mode mode)
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.Register(HypercallNumber.MemoryOp, &Scrub);
        var v = new TestVcpu(1);
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.MemoryOp, R9 = 0x99, Rbp = 0xbb, R10 = 0x10, Rsi = 0x51 };
        if (mode == GuestX86Mode.Long64) { regs.Rdi = 0; regs.Rsi = 8; }
        else { regs.Rbx = 0; regs.Rcx = 8; }

        int entries = 0;
        HypercallDisposition disposition;
        do
        {
            entries++;
            disposition = d.Dispatch(v, ref regs, mode, 0, new FlatGuestMemory(0, 16));
            if (disposition == HypercallDisposition.Preempted)
            {
                Assert.Equal((ulong)HypercallNumber.MemoryOp, regs.Rax);
                ulong next = mode == GuestX86Mode.Long64 ? regs.Rdi : regs.Rbx;
                ulong end = mode == GuestX86Mode.Long64 ? regs.Rsi : regs.Rcx;
                Assert.Equal((ulong)(entries * 3), next);
                Assert.Equal(8UL, end);
            }
        }
        while (disposition == HypercallDisposition.Preempted);

        Assert.Equal(3, entries);
        Assert.Equal(8, v.Work);
        Assert.Equal(0U, (uint)regs.Rax);
        // Registers beyond the continuation's two arguments are left alone.
        Assert.Equal(0x99UL, regs.R9);
        Assert.Equal(0xbbUL, regs.Rbp);
        Assert.Equal(0x10UL, regs.R10);
        if (mode == GuestX86Mode.Protected32)
            Assert.Equal(0x51UL, regs.Rsi);
    }

    [Fact]
    public void Cancelled_continuation_completes_normally()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.Register(HypercallNumber.SchedOp, (ref HypercallCall<TestVcpu> c) =>
        {
            c.CreateContinuation(HypercallNumber.SchedOp, [1]);
            Assert.True(c.IsPreempted);
            c.CancelContinuation();
            return XenErrno.EFAULT.Negated();
        });
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.SchedOp, Rdi = 5 };
        Assert.Equal(HypercallDisposition.Completed, d.Dispatch(new TestVcpu(1), ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16)));
        Assert.Equal(-14L, (long)regs.Rax);
    }

    [Fact]
    public void More_than_six_continuation_arguments_is_a_host_error()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.Register(HypercallNumber.SchedOp, (ref HypercallCall<TestVcpu> c) => c.CreateContinuation(HypercallNumber.SchedOp, [1, 2, 3, 4, 5, 6, 7]));
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.SchedOp };
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Dispatch(new TestVcpu(1), ref regs, GuestX86Mode.Long64, 0, new FlatGuestMemory(0, 16)));
    }
}
