using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The slice path allocates nothing (the project's "hot paths allocate nothing"): scheduling a vCPU in (pvclock,
/// runstate, timers, APIC, preemption timer), its VM entries and exits and a hypercall that ends the slice.
/// </summary>
public class SliceAllocationTests
{
    private const uint Load = 0x100000, HypercallPage = Load + 0x2000;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]     // with the quick path's in-process Dom0 services, which the slice polls after every exit
    public void A_slice_that_makes_a_hypercall_and_yields_allocates_nothing(bool inProcessBackend)
    {
        // wrmsr(hypercall page); then forever: xen_version(XENVER_version); SCHEDOP_yield.
        var a = new Assembler(32);
        Label loop = a.CreateLabel();
        a.mov(esp, Load + 0x4000);
        a.mov(ecx, 0x40000000);
        a.mov(eax, HypercallPage);
        a.xor(edx, edx);
        a.wrmsr();
        a.Label(ref loop);
        a.xor(ebx, ebx);                                            // XENVER_version
        a.xor(ecx, ecx);
        a.mov(eax, HypercallPage + ((uint)HypercallNumber.XenVersion * 32));
        a.call(eax);
        a.xor(ebx, ebx);                                            // SCHEDOP_yield
        a.xor(ecx, ecx);
        a.mov(eax, HypercallPage + ((uint)HypercallNumber.SchedOp * 32));
        a.call(eax);
        a.jmp(loop);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load);
        using var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend);
        Assert.True(machine.TryCreateDomain(new DomainConfig("t", Elf32ImageWriter.Write(Load, stream.ToArray(), 0x4000, Load), 8 << 20, XenStore: inProcessBackend), out var d, out string e), e);
        var vcpu = d!.Vcpus[0];

        for (int i = 0; i < 2_000; i++)                             // first calls: JIT, static constructors, lazy tables
            Assert.Equal(ExitAction.Yield, vcpu.RunSlice());
        ulong exits = vcpu.ExitCount;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1_000; i++)
            vcpu.RunSlice();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(DomainState.Running, d.State);
        Assert.Equal(2_000UL, vcpu.ExitCount - exits);               // two VMCALL exits per slice: the loop really ran
        Assert.Equal(0, allocated);
    }
}
