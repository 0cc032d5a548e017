using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The calls Linux probes at boot that this hypervisor answers as Xen with HAP does (HVMOP_pagetable_dying, vm_assist),
/// with hostile arguments, the layout of <c>struct xen_hvm_pagetable_dying</c> against Xen's header, and the hypervisor
/// log's line for each call that returns -ENOSYS (LinuxKernelLogTests relies on it).
/// </summary>
public sealed class LinuxProbeHypercallTests
{
    private static long Call(Machine machine, VirtualCpu caller, GuestPage memory, HypercallNumber op, ulong a0, ulong a1 = 0)
    {
        var regs = new HypercallRegisters { Rax = (ulong)op, Rdi = a0, Rsi = a1 };
        machine.Hypercalls.Dispatch(caller, ref regs, GuestX86Mode.Long64, 0, memory);
        return (long)regs.Rax;
    }

    private static (Machine Machine, VirtualCpu Guest, List<string> Log) Setup()
    {
        var log = new List<string>();
        var machine = new Machine(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false)
        {
            Logger = log.Add,
        };
        var guest = new Domain(machine, 1, "guest", 1, privileged: false, upcall: null);
        machine.AddDomain(guest);
        guest.SetMaxPages(16);
        Assert.Equal(0, guest.Populate(0));
        Assert.Equal(0, guest.InitialiseBootVcpu(0x1000, 0));
        machine.AddDomain(new Domain(machine, 2, "other", 1, privileged: false, upcall: null));
        return (machine, guest.Vcpus[0], log);
    }

    [Fact]
    public void Pagetable_dying_answers_as_xen_with_hap()
    {
        var (machine, guest, _) = Setup();
        using var _m = machine;
        var memory = new GuestPage();
        const ulong pagetableDying = 9;
        MemoryMarshal.Write(memory.Bytes, new XenHvmPagetableDying { Domid = DomainId.Self, Gpa = 0x1000 });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, pagetableDying, 0));
        MemoryMarshal.Write(memory.Bytes, new XenHvmPagetableDying { Domid = 1, Gpa = 0x1000 });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, pagetableDying, 0));
        MemoryMarshal.Write(memory.Bytes, new XenHvmPagetableDying { Domid = 2 });
        Assert.Equal(XenErrno.EOPNOTSUPP.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, pagetableDying, 0));
        MemoryMarshal.Write(memory.Bytes, new XenHvmPagetableDying { Domid = 77 });
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, pagetableDying, 0));
        // The argument straddles the end of the guest's memory.
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, pagetableDying, 4096 - 8));
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, pagetableDying, ulong.MaxValue - 3));
    }

    [Fact]
    public void Vm_assist_offers_no_type()
    {
        var (machine, guest, _) = Setup();
        using var _m = machine;
        var memory = new GuestPage();
        foreach (ulong type in (ulong[])[0, 2, 5, 32, 63, 64, uint.MaxValue, ulong.MaxValue])
        {
            Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, guest, memory, HypercallNumber.VmAssist, 0, type));
            Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, guest, memory, HypercallNumber.VmAssist, 7, type));
        }
    }

    [Fact]
    public void Xen_hvm_pagetable_dying_matches_xen_hvm_hvm_op_h()
    {
        var a = default(XenHvmPagetableDying);
        var v = XenAbiLayout.Evaluate(["xen/xen.h", "xen/hvm/hvm_op.h"],
        [
            "sizeof(struct xen_hvm_pagetable_dying)", "offsetof(struct xen_hvm_pagetable_dying, domid)",
            "offsetof(struct xen_hvm_pagetable_dying, gpa)", "HVMOP_pagetable_dying",
        ]);
        Assert.Equal(new long[] { Unsafe.SizeOf<XenHvmPagetableDying>(), Off(ref a, ref a.Domid), Off(ref a, ref a.Gpa), (long)HvmOp.PagetableDying }, v);
    }

    [Fact]
    public void Each_enosys_call_is_logged_once_per_number_and_sub_op_and_the_log_is_bounded()
    {
        var (machine, guest, log) = Setup();
        using var _m = machine;
        ulong enosys = unchecked((ulong)XenErrno.ENOSYS.Negated());
        EnosysLog.After(guest, false, (ulong)HypercallNumber.EventChannelOp, 11, enosys);
        EnosysLog.After(guest, false, (ulong)HypercallNumber.EventChannelOp, 11, enosys);
        EnosysLog.After(guest, false, (ulong)HypercallNumber.EventChannelOp, 13, enosys);
        EnosysLog.After(guest, false, (ulong)HypercallNumber.EventChannelOp, 14, 0);                  // succeeded: not logged
        EnosysLog.After(guest, false, (ulong)HypercallNumber.EventChannelOp, 15, unchecked((ulong)XenErrno.EINVAL.Negated()));
        EnosysLog.After(guest, false, 1000, 0, enosys);                                                // past the table
        EnosysLog.After(guest, true, (ulong)HypercallNumber.EventChannelOp, 16, 0xFFFF_FFDAul);        // a 64-bit caller's RAX is not -38
        Assert.Equal(
        [
            "d1v0: hypercall EventChannelOp (op 32, sub-op 11) -> -ENOSYS",
            "d1v0: hypercall EventChannelOp (op 32, sub-op 13) -> -ENOSYS",
            "d1v0: hypercall #1000 (op 1000, sub-op 0) -> -ENOSYS",
        ], log);

        // A guest looping over unknown sub-ops gets MaxDistinct lines and one more saying the rest are not logged.
        for (ulong sub = 100; sub < 100 + 10 * EnosysLog.MaxDistinct; sub++)
            EnosysLog.After(guest, false, (ulong)HypercallNumber.HvmOp, sub, enosys);
        Assert.Equal(EnosysLog.MaxDistinct + 1, log.Count);
        Assert.EndsWith("not logged", log[^1]);
    }

    [Fact]
    public void Mtrrs_start_enabled_write_back_and_refuse_invalid_types_and_reserved_bits()
    {
        var (machine, guest, _) = Setup();
        using var _m = machine;
        Assert.Equal(8ul | (1ul << 8) | (1ul << 10), MtrrMsrs.Read(guest, MtrrMsrs.Cap));
        Assert.Equal(6ul | (1ul << 11), MtrrMsrs.Read(guest, MtrrMsrs.DefType));
        Assert.False(MtrrMsrs.TryWrite(guest, MtrrMsrs.Cap, 0));
        Assert.False(MtrrMsrs.TryWrite(guest, MtrrMsrs.DefType, 2));                    // type 2 is reserved
        Assert.False(MtrrMsrs.TryWrite(guest, MtrrMsrs.DefType, 6 | (1ul << 12)));      // a reserved bit
        Assert.True(MtrrMsrs.TryWrite(guest, MtrrMsrs.DefType, 0 | (1ul << 10)));
        Assert.Equal(1ul << 10, MtrrMsrs.Read(guest, MtrrMsrs.DefType));
        Assert.True(MtrrMsrs.TryWrite(guest, MtrrMsrs.Fix4KF8000, 0x0606_0606_0505_0100));
        Assert.Equal(0x0606_0606_0505_0100ul, MtrrMsrs.Read(guest, MtrrMsrs.Fix4KF8000));
        Assert.False(MtrrMsrs.TryWrite(guest, MtrrMsrs.Fix64K, 0x0700_0000_0000_0000));  // one byte type 7
        Assert.True(MtrrMsrs.TryWrite(guest, MtrrMsrs.PhysBase0 + 14, 0x8000_0006));     // PHYSBASE7
        Assert.False(MtrrMsrs.TryWrite(guest, MtrrMsrs.PhysBase0 + 14, 0x8000_0106));    // bits 11:8 reserved
        Assert.False(MtrrMsrs.TryWrite(guest, MtrrMsrs.PhysBase0 + 15, 0x0000_0001));    // PHYSMASK bits 10:0 reserved
        Assert.False(MtrrMsrs.TryWrite(guest, MtrrMsrs.PhysBase0 + 15, 1ul << 52));      // at MAXPHYADDR
        Assert.True(MtrrMsrs.TryWrite(guest, MtrrMsrs.PhysBase0 + 15, 0xF_FFFF_F000_0800));
        Assert.Equal(0x8000_0006ul, MtrrMsrs.Read(guest, MtrrMsrs.PhysBase0 + 14));
        Assert.False(MtrrMsrs.Owns(MtrrMsrs.PhysBase0 + 16));                           // past VCNT: the unknown-MSR #GP
    }

    private static long Off<TS, TF>(ref TS s, ref TF f) => Unsafe.ByteOffset(ref Unsafe.As<TS, byte>(ref s), ref Unsafe.As<TF, byte>(ref f)).ToInt64();
}
