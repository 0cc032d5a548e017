using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The toolstack's hypercalls (src/Host) from a guest: domctl, sysctl and the calls naming another domain are refused
/// to an unprivileged domain as Xen's dummy XSM policy refuses them (-EPERM), and a missing domain is -ESRCH.
/// </summary>
public sealed class ToolstackHypercallTests
{
    private static long Call(Machine machine, VirtualCpu caller, GuestPage memory, HypercallNumber op, ulong a0, ulong a1 = 0)
    {
        var regs = new HypercallRegisters { Rax = (ulong)op, Rdi = a0, Rsi = a1 };
        machine.Hypercalls.Dispatch(caller, ref regs, GuestX86Mode.Long64, 0, memory);
        return (long)regs.Rax;
    }

    internal static (Machine Machine, VirtualCpu Guest, Domain Other) Setup()
    {
        var machine = new Machine(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
        var guest = new Domain(machine, 1, "guest", 1, privileged: false, upcall: null);
        machine.AddDomain(guest);
        guest.SetMaxPages(16);
        Assert.Equal(0, guest.Populate(0));
        Assert.Equal(0, guest.InitialiseBootVcpu(0x1000, 0));
        var other = new Domain(machine, 2, "other", 1, privileged: false, upcall: null);
        machine.AddDomain(other);
        return (machine, guest.Vcpus[0], other);
    }

    [Fact]
    public void A_guest_calling_domctl_or_sysctl_gets_EPERM()
    {
        var (machine, guest, other) = Setup();
        using var _ = machine;
        var memory = new GuestPage();
        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlDestroyDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = 2 });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, guest, memory, HypercallNumber.Domctl, 0));
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, guest, memory, HypercallNumber.Sysctl, 0));
        Assert.NotNull(machine.FindDomain(2));
        Assert.Equal(1, other.PauseCount);
    }

    [Fact]
    public void A_guest_naming_another_domain_gets_EPERM_or_ESRCH()
    {
        var (machine, guest, other) = Setup();
        using var _ = machine;
        var memory = new GuestPage();
        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new XenHvmParam { Domid = 2, Index = (uint)HvmParam.StorePfn, Value = 5 });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, (ulong)HvmOp.SetParam, 0));
        Assert.Equal(0ul, other.GetHvmParam(HvmParam.StorePfn));
        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new XenHvmParam { Domid = 9, Index = (uint)HvmParam.StorePfn });
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, (ulong)HvmOp.GetParam, 0));

        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new XenMemoryReservation { ExtentStart = 64, NrExtents = 1, Domid = 2 });
        // populate_physmap answers the extents done, 0, for XSM's refusal too (HostileHypercallAuditTests).
        Assert.Equal(0, Call(machine, guest, memory, HypercallNumber.MemoryOp, ToolsAbi.MemPopulatePhysmap, 0));
        Assert.Equal(0ul, other.PopulatedPages);

        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new SchedRemoteShutdown { DomainId = 2 });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, guest, memory, HypercallNumber.SchedOp, (ulong)SchedOp.RemoteShutdown, 0));
        Assert.False(other.IsShutdown);
    }

    [Fact]
    public void Populate_stops_at_max_mem_and_refuses_a_populated_gfn()
    {
        var (machine, _, other) = Setup();
        using var __ = machine;
        other.SetMaxPages(2);
        Assert.Equal(0, other.Populate(7));
        Assert.Equal(XenErrno.EBUSY.Negated(), other.Populate(7));
        Assert.Equal(0, other.Populate(8));
        Assert.Equal(XenErrno.ENOMEM.Negated(), other.Populate(9));
    }
}
