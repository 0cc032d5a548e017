using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

/// <summary>The dispatch path allocates nothing (docs/architecture.md, "Conventions"); counted, not timed.</summary>
public unsafe class AllocationTests
{
    private static long Version(ref HypercallCall<TestVcpu> call) => 0x0004_0011;

    private static long Features(ref HypercallCall<TestVcpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out XenFeatureInfo info))
            return XenErrno.EFAULT.Negated();
        info.Submap = 4;
        return call.TryCopyToGuest(call.Argument(1), in info) ? 0 : XenErrno.EFAULT.Negated();
    }

    [Fact]
    public void Dispatch_multicall_and_continuation_do_not_allocate()
    {
        var d = new HypercallDispatcher<TestVcpu> { Policy = new HypercallPrivilegePolicy<TestVcpu>(v => v.Privileged) };
        d.RegisterSubOp(HypercallNumber.XenVersion, 0, &Version);
        d.RegisterSubOp(HypercallNumber.XenVersion, 6, &Features);
        d.Register(HypercallNumber.SchedOp, (ref HypercallCall<TestVcpu> c) => c.Argument(0) > 0 ? c.CreateContinuation(HypercallNumber.SchedOp, [c.Argument(0) - 1]) : 0);
        var vcpu = new TestVcpu(1);
        var memory = new FlatGuestMemory(0x1000, 4096);
        for (int i = 0; i < 4; i++)
            MemoryMarshal.Write(memory.At(0x1000 + (ulong)i * 64, 64), new MulticallEntry { Op = (ulong)HypercallNumber.XenVersion });

        void RunAll()
        {
            var regs = new HypercallRegisters { Rax = 17, Rdi = 0 };
            d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
            regs = new HypercallRegisters { Rax = 17, Rbx = 6, Rcx = 0x1800 };
            d.Dispatch(vcpu, ref regs, GuestX86Mode.Protected32, 0, memory);
            regs = new HypercallRegisters { Rax = 13, Rdi = 0x1000, Rsi = 4 };
            d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
            regs = new HypercallRegisters { Rax = 29, Rdi = 3 };
            while (d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory) == HypercallDisposition.Preempted) { }
            regs = new HypercallRegisters { Rax = 60 };
            d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
        }

        for (int i = 0; i < 100; i++)
            RunAll(); // warm up (JIT, tiering)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            RunAll();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
