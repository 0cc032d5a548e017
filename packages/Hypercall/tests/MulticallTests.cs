using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

public unsafe class MulticallTests
{
    private const ulong ListBase = 0x10000;

    private static long AddArgs(ref HypercallCall<TestVcpu> call) => (long)(call.Argument(0) + call.Argument(1));
    private static long Fails(ref HypercallCall<TestVcpu> call) => XenErrno.EINVAL.Negated();

    // Processes up to 2 units per call; arg0 = units left; re-enters with the rest.
    private static long TwoUnitsAtATime(ref HypercallCall<TestVcpu> call)
    {
        ulong left = call.Argument(0);
        call.Caller.Work += (int)Math.Min(left, 2);
        if (left > 2)
            return call.CreateContinuation(call.Number, [left - 2, call.Argument(1)]);
        return 0;
    }

    private static HypercallDispatcher<TestVcpu> Dispatcher()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.Register(HypercallNumber.XenVersion, &AddArgs);
        d.Register(HypercallNumber.ConsoleIo, &Fails);
        d.Register(HypercallNumber.SchedOp, &TwoUnitsAtATime);
        return d;
    }

    private static void Put(FlatGuestMemory m, int index, ulong op, params ulong[] args)
    {
        var e = new MulticallEntry { Op = op, Result = 0xAAAA };
        for (int i = 0; i < args.Length; i++)
            e.Args[i] = args[i];
        MemoryMarshal.Write(m.At(ListBase + (ulong)index * 64, 64), in e);
    }

    private static MulticallEntry Get(FlatGuestMemory m, int index) => MemoryMarshal.Read<MulticallEntry>(m.At(ListBase + (ulong)index * 64, 64));

    private static (HypercallDisposition, HypercallRegisters) Call(HypercallDispatcher<TestVcpu> d, FlatGuestMemory m, TestVcpu v, ulong list, ulong count)
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Multicall, Rdi = list, Rsi = count };
        var disposition = d.Dispatch(v, ref regs, GuestX86Mode.Long64, 0, m);
        return (disposition, regs);
    }

    [Fact]
    public void Each_entry_runs_and_only_result_is_written_back_a_failing_entry_does_not_stop_the_batch()
    {
        var m = new FlatGuestMemory(ListBase, 4096);
        Put(m, 0, (ulong)HypercallNumber.XenVersion, 2, 3);
        Put(m, 1, (ulong)HypercallNumber.ConsoleIo, 9);
        Put(m, 2, 60);                                         // unregistered: -ENOSYS
        Put(m, 3, (ulong)HypercallNumber.XenVersion, 40, 2);
        var (disposition, regs) = Call(Dispatcher(), m, new TestVcpu(1), ListBase, 4);

        Assert.Equal(HypercallDisposition.Completed, disposition);
        Assert.Equal(0UL, regs.Rax);
        Assert.Equal(5UL, Get(m, 0).Result);
        Assert.Equal(unchecked((ulong)-22L), Get(m, 1).Result);
        Assert.Equal(unchecked((ulong)-38L), Get(m, 2).Result);
        Assert.Equal(42UL, Get(m, 3).Result);
        Assert.Equal(9UL, Get(m, 1).Args[0]);                  // arguments untouched
    }

    [Fact]
    public void Nested_multicall_is_refused_with_einval_in_its_entry()
    {
        var m = new FlatGuestMemory(ListBase, 4096);
        Put(m, 0, (ulong)HypercallNumber.Multicall, ListBase + 64, 1);
        Put(m, 1, (ulong)HypercallNumber.XenVersion, 1, 1);
        var (_, regs) = Call(Dispatcher(), m, new TestVcpu(1), ListBase, 1);
        Assert.Equal(0UL, regs.Rax);
        Assert.Equal(unchecked((ulong)-22L), Get(m, 0).Result);
        Assert.Equal(0xAAAAUL, Get(m, 1).Result);               // the nested batch never ran
    }

    [Fact]
    public void Unreadable_list_is_efault()
    {
        var m = new FlatGuestMemory(ListBase, 4096);
        Put(m, 0, (ulong)HypercallNumber.XenVersion, 1, 1);
        var (_, regs) = Call(Dispatcher(), m, new TestVcpu(1), 0xdead_0000, 1);
        Assert.Equal(unchecked((ulong)-14L), regs.Rax);

        // A list running off the end of guest memory: the first entry runs, the second faults.
        ulong last = ListBase + 4096 - 64;
        MemoryMarshal.Write(m.At(last, 64), new MulticallEntry { Op = (ulong)HypercallNumber.XenVersion, Args = Args(1, 2) });
        (_, regs) = Call(Dispatcher(), m, new TestVcpu(1), last, 2);
        Assert.Equal(unchecked((ulong)-14L), regs.Rax);
        Assert.Equal(3UL, MemoryMarshal.Read<MulticallEntry>(m.At(last, 64)).Result);
    }

    [Fact]
    public void Zero_entries_is_a_no_op()
    {
        var m = new FlatGuestMemory(ListBase, 64);
        var (disposition, regs) = Call(Dispatcher(), m, new TestVcpu(1), 0, 0);
        Assert.Equal(HypercallDisposition.Completed, disposition);
        Assert.Equal(0UL, regs.Rax);
    }

    [Fact]
    public void Preempted_entry_writes_its_continuation_back_and_the_multicall_continues_from_it()
    {
        var m = new FlatGuestMemory(ListBase, 4096);
        var v = new TestVcpu(1);
        Put(m, 0, (ulong)HypercallNumber.XenVersion, 1, 1);
        Put(m, 1, (ulong)HypercallNumber.SchedOp, 5, 77);       // 5 units: preempts twice
        Put(m, 2, (ulong)HypercallNumber.XenVersion, 2, 2);
        var d = Dispatcher();

        var (disposition, regs) = Call(d, m, v, ListBase, 3);
        Assert.Equal(HypercallDisposition.Preempted, disposition);
        Assert.Equal((ulong)HypercallNumber.Multicall, regs.Rax);
        Assert.Equal(ListBase + 64, regs.Rdi);                  // the preempted entry
        Assert.Equal(2UL, regs.Rsi);                            // it and the one after
        Assert.Equal(2, v.Work);
        Assert.Equal(3UL, Get(m, 1).Args[0]);                   // updated arguments in guest memory
        Assert.Equal(77UL, Get(m, 1).Args[1]);
        Assert.Equal(2UL, Get(m, 0).Result);
        Assert.Equal(0xAAAAUL, Get(m, 2).Result);

        // The guest re-executes VMCALL with the registers as left.
        var again = d.Dispatch(v, ref regs, GuestX86Mode.Long64, 0, m);
        Assert.Equal(HypercallDisposition.Preempted, again);
        again = d.Dispatch(v, ref regs, GuestX86Mode.Long64, 0, m);
        Assert.Equal(HypercallDisposition.Completed, again);
        Assert.Equal(0UL, regs.Rax);
        Assert.Equal(5, v.Work);
        Assert.Equal(0UL, Get(m, 1).Result);
        Assert.Equal(4UL, Get(m, 2).Result);
    }

    [Fact]
    public void Preempt_check_between_entries_continues_with_the_next_entry()
    {
        var m = new FlatGuestMemory(ListBase, 4096);
        for (int i = 0; i < 4; i++)
            Put(m, i, (ulong)HypercallNumber.XenVersion, (ulong)i, 10);
        var d = Dispatcher();
        int calls = 0;
        d.PreemptCheck = _ => ++calls % 2 == 0;                // every other check says "give the CPU back"

        var (disposition, regs) = Call(d, m, new TestVcpu(1), ListBase, 4);
        Assert.Equal(HypercallDisposition.Preempted, disposition);
        Assert.Equal(ListBase + 2 * 64, regs.Rdi);
        Assert.Equal(2UL, regs.Rsi);
        Assert.Equal(10UL, Get(m, 0).Result);
        Assert.Equal(11UL, Get(m, 1).Result);
        Assert.Equal(0xAAAAUL, Get(m, 2).Result);
    }

    [Fact]
    public void Compat_callers_use_32_byte_entries_and_32_bit_results()
    {
        var m = new FlatGuestMemory(ListBase, 4096);
        var e0 = new CompatMulticallEntry { Op = (uint)HypercallNumber.XenVersion, Result = 0xAAAA };
        e0.Args[0] = 0xFFFF_FFF0; e0.Args[1] = 0x20;
        var e1 = new CompatMulticallEntry { Op = (uint)HypercallNumber.ConsoleIo, Result = 0xAAAA };
        MemoryMarshal.Write(m.At(ListBase, 32), in e0);
        MemoryMarshal.Write(m.At(ListBase + 32, 32), in e1);
        m.At(ListBase + 64, 4).Fill(0x55);

        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Multicall, Rbx = ListBase, Rcx = 2 };
        Dispatcher().Dispatch(new TestVcpu(1), ref regs, GuestX86Mode.Protected32, 0, m);
        Assert.Equal(0U, (uint)regs.Rax);
        Assert.Equal(0x1_0000_0010UL & 0xFFFF_FFFF, MemoryMarshal.Read<CompatMulticallEntry>(m.At(ListBase, 32)).Result);
        Assert.Equal(unchecked((uint)-22), MemoryMarshal.Read<CompatMulticallEntry>(m.At(ListBase + 32, 32)).Result);
        Assert.Equal(0x55555555u, MemoryMarshal.Read<uint>(m.At(ListBase + 64, 4)));   // nothing past the list
    }

    [Fact]
    public void Policy_is_asked_for_each_entry()
    {
        var m = new FlatGuestMemory(ListBase, 4096);
        Put(m, 0, (ulong)HypercallNumber.XenVersion, 1, 1);
        Put(m, 1, (ulong)HypercallNumber.Domctl);
        var d = Dispatcher();
        d.Register(HypercallNumber.Domctl, &AddArgs);
        d.Policy = new HypercallPrivilegePolicy<TestVcpu>(v => v.Privileged);
        var (_, regs) = Call(d, m, new TestVcpu(4), ListBase, 2);
        Assert.Equal(0UL, regs.Rax);
        Assert.Equal(2UL, Get(m, 0).Result);
        Assert.Equal(unchecked((ulong)-1L), Get(m, 1).Result);
    }

    private static HypercallArguments Args(params ulong[] values)
    {
        HypercallArguments a = default;
        for (int i = 0; i < values.Length; i++)
            a[i] = values[i];
        return a;
    }
}
