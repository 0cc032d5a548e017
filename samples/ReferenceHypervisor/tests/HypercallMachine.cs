using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The machines the hypercall tests make one call at a time on (the VMCALL's registers through
/// <see cref="Machine.Hypercalls"/>): a guest whose code only halts, domain 0 in host mode, and the call itself.
/// </summary>
internal static class HypercallMachine
{
    private const uint Load = 0x100000;

    /// <summary>A machine with one unprivileged domain of <paramref name="vcpus"/> vCPUs whose code only halts (never run).</summary>
    public static (Machine Machine, Domain Domain) Build(int vcpus = 1)
    {
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault()) { MaxInstructionsPerVcpu = 10_000_000 };
        var a = new Assembler(32);
        a.cli();
        a.hlt();
        byte[] kernel = Elf32ImageWriter.Write(Load, ThreadedSchedulerTests.Assemble(a, Load), 0x8000, Load);
        Assert.True(machine.TryCreateDomain(new DomainConfig("hypercalls", kernel, 8 << 20, Vcpus: vcpus), out var d, out string e), e);
        return (machine, d!);
    }

    /// <summary>A host-mode machine with a privileged domain 0 that has a vCPU to make calls from.</summary>
    public static (Machine Machine, Domain Dom0) BuildDom0()
    {
        var machine = new Machine(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
        return (machine, AddDom0(machine));
    }

    /// <summary>Adds a privileged domain 0 with one initialised vCPU to <paramref name="machine"/>.</summary>
    public static Domain AddDom0(Machine machine)
    {
        var dom0 = new Domain(machine, 0, "Domain-0", 1, privileged: true, upcall: null);
        machine.AddDomain(dom0);
        dom0.SetMaxPages(16);
        Assert.Equal(0, dom0.Populate(0));
        Assert.Equal(0, dom0.InitialiseBootVcpu(0x1000, 0));
        return dom0;
    }

    /// <summary>Dispatches hypercall <paramref name="op"/> from a 64-bit (or, with <paramref name="compat"/>, 32-bit) caller.</summary>
    public static long Call(Machine machine, VirtualCpu caller, IGuestVirtualMemory memory, HypercallNumber op, ulong a0 = 0,
        ulong a1 = 0, ulong a2 = 0, bool compat = false)
    {
        var regs = compat
            ? new HypercallRegisters { Rax = (ulong)op, Rbx = a0, Rcx = a1, Rdx = a2 }
            : new HypercallRegisters { Rax = (ulong)op, Rdi = a0, Rsi = a1, Rdx = a2 };
        machine.Hypercalls.Dispatch(caller, ref regs, compat ? GuestX86Mode.Protected32 : GuestX86Mode.Long64, 0, memory);
        return compat ? (int)regs.Rax : (long)regs.Rax;
    }
}
