using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// <c>hvm_set_param</c>'s per-parameter rules and <c>hvmop_get_param</c>'s views (xen/arch/x86/hvm/hvm.c, since Xen 4.9
/// for the VM86 TSS pair), for a guest setting its own parameters and for the toolstack setting another domain's.
/// <c>HVM_PARAM_VM86_TSS</c> is an alias of <c>HVM_PARAM_VM86_TSS_SIZED</c> (params.h: the address in the low 32 bits,
/// the size in the high ones): a write of the old one is a TSS of 128 bytes, a bad value is -EINVAL and crashes a
/// guest that set it on itself, a size past the useful maximum is capped.
/// </summary>
public class HvmParamRuleTests
{
    // sizeof(struct tss32) + a 256-bit interrupt redirection bitmap + a 64 Kib I/O bitmap + one padding byte.
    private const ulong MaxTssSize = 104 + (0x100 / 8) + (0x10000 / 8) + 1;

    private static long Call(Machine machine, VirtualCpu caller, GuestPage memory, HvmOp op, ushort domid, HvmParam index, ulong value = 0)
    {
        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new XenHvmParam { Domid = domid, Index = (uint)index, Value = value });
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.HvmOp, Rdi = (ulong)op, Rsi = 0 };
        machine.Hypercalls.Dispatch(caller, ref regs, GuestX86Mode.Long64, 0, memory);
        return (long)regs.Rax;
    }

    private static ulong Get(Machine machine, VirtualCpu caller, HvmParam index, ushort domid = DomainId.Self)
    {
        var memory = new GuestPage();
        Assert.Equal(0, Call(machine, caller, memory, HvmOp.GetParam, domid, index));
        return System.Runtime.InteropServices.MemoryMarshal.Read<XenHvmParam>(memory.Bytes).Value;
    }

    private static long Set(Machine machine, VirtualCpu caller, HvmParam index, ulong value, ushort domid = DomainId.Self) =>
        Call(machine, caller, new GuestPage(), HvmOp.SetParam, domid, index, value);

    [Fact]
    public void The_old_vm86_tss_parameter_sets_a_128_byte_tss_read_back_through_both_names()
    {
        var (machine, guest, _) = ToolstackHypercallTests.Setup();
        using var owner = machine;
        Assert.Equal(0, Set(machine, guest, HvmParam.Vm86Tss, 0xFFFF_F000));
        Assert.Equal(0xFFFF_F000ul, Get(machine, guest, HvmParam.Vm86Tss));
        Assert.Equal((128ul << 32) | 0xFFFF_F000, Get(machine, guest, HvmParam.Vm86TssSized));

        Assert.Equal(0, Set(machine, guest, HvmParam.Vm86TssSized, (200ul << 32) | 0x3000));
        Assert.Equal(0x3000ul, Get(machine, guest, HvmParam.Vm86Tss));
        Assert.Equal((200ul << 32) | 0x3000, Get(machine, guest, HvmParam.Vm86TssSized));

        Assert.Equal(0, Set(machine, guest, HvmParam.Vm86Tss, 0));   // no TSS: no size either
        Assert.Equal(0ul, Get(machine, guest, HvmParam.Vm86TssSized));
        Assert.Equal(DomainState.Running, guest.Domain.State);
    }

    [Fact]
    public void A_tss_size_past_the_useful_maximum_is_capped()
    {
        var (machine, guest, _) = ToolstackHypercallTests.Setup();
        using var owner = machine;
        Assert.Equal(0, Set(machine, guest, HvmParam.Vm86TssSized, (0xFFFF_FFFFul << 32) | 0x2000));
        Assert.Equal((MaxTssSize << 32) | 0x2000, Get(machine, guest, HvmParam.Vm86TssSized));
        Assert.Equal(0, Set(machine, guest, HvmParam.Vm86TssSized, (MaxTssSize << 32) | 0x2000));
        Assert.Equal((MaxTssSize << 32) | 0x2000, Get(machine, guest, HvmParam.Vm86TssSized));
    }

    [Theory]
    [InlineData(HvmParam.Vm86Tss, 1ul << 32)]                       // hardware would truncate the address
    [InlineData(HvmParam.Vm86TssSized, (103ul << 32) | 0x1000)]      // smaller than a 32-bit TSS
    [InlineData(HvmParam.Vm86TssSized, 0ul)]
    public void A_bad_vm86_tss_is_einval_and_crashes_the_guest_that_set_it_on_itself(HvmParam index, ulong value)
    {
        var (machine, guest, _) = ToolstackHypercallTests.Setup();
        using var owner = machine;
        Assert.Equal(0, Set(machine, guest, HvmParam.Vm86TssSized, (128ul << 32) | 0x5000));
        Assert.Equal(XenErrno.EINVAL.Negated(), Set(machine, guest, index, value));
        Assert.Equal(DomainState.Crashed, guest.Domain.State);
        Assert.Equal((128ul << 32) | 0x5000, Get(machine, guest, HvmParam.Vm86TssSized)); // unchanged
    }

    [Fact]
    public void The_toolstack_setting_another_domain_s_parameters_meets_the_same_rules_and_crashes_nobody()
    {
        var (machine, guest, _) = ToolstackHypercallTests.Setup();
        using var owner = machine;
        var tools = HypercallMachine.AddDom0(machine).Vcpus[0];
        ushort domid = guest.Domain.Id;

        Assert.Equal(XenErrno.EINVAL.Negated(), Set(machine, tools, HvmParam.Vm86TssSized, 16ul << 32, domid));
        Assert.Equal(XenErrno.EINVAL.Negated(), Set(machine, tools, HvmParam.Vm86Tss, 1ul << 40, domid));
        Assert.Equal(XenErrno.EINVAL.Negated(), Set(machine, tools, HvmParam.X87FipWidth, 3, domid));
        Assert.Equal(XenErrno.ENODEV.Negated(), Set(machine, tools, HvmParam.AcpiIoportsLocation, 1, domid));
        Assert.Equal(DomainState.Running, guest.Domain.State);
        Assert.Equal(DomainState.Running, tools.Domain.State);

        Assert.Equal(0, Set(machine, tools, HvmParam.Vm86Tss, 0x7000, domid));
        Assert.Equal((128ul << 32) | 0x7000, Get(machine, tools, HvmParam.Vm86TssSized, domid));
        Assert.Equal(0x7000ul, Get(machine, guest, HvmParam.Vm86Tss));
        Assert.Equal(0, Set(machine, tools, HvmParam.X87FipWidth, 4, domid));
        Assert.Equal(4ul, Get(machine, guest, HvmParam.X87FipWidth));
    }

    private static long TryGet(Machine machine, VirtualCpu caller, HvmParam index, ushort domid = DomainId.Self) =>
        Call(machine, caller, new GuestPage(), HvmOp.GetParam, domid, index);

    [Fact]
    public void Deprecated_parameters_are_einval_for_everyone_and_the_toolstack_s_own_are_eperm_on_oneself()
    {
        // hvm_allow_set_param / hvm_allow_get_param: the deprecated parameters are -EINVAL whoever asks; any other a
        // domain may not touch on itself is -EPERM, the toolstack's own domain included (d == current->domain).
        var (machine, guest, _) = ToolstackHypercallTests.Setup();
        using var owner = machine;
        var tools = HypercallMachine.AddDom0(machine).Vcpus[0];
        foreach (HvmParam deprecated in new[] { HvmParam.PaeEnabled, HvmParam.DmDomain, HvmParam.MemoryEventCr0, HvmParam.MemoryEventCr3,
                     HvmParam.MemoryEventCr4, HvmParam.MemoryEventInt3, HvmParam.NestedHvm, HvmParam.MemoryEventSingleStep,
                     HvmParam.BufioreqEvtchn, HvmParam.MemoryEventMsr })
        {
            Assert.Equal(XenErrno.EINVAL.Negated(), Set(machine, guest, deprecated, 1));
            Assert.Equal(XenErrno.EINVAL.Negated(), TryGet(machine, guest, deprecated));
            Assert.Equal(XenErrno.EINVAL.Negated(), Set(machine, tools, deprecated, 1, guest.Domain.Id));
            Assert.Equal(XenErrno.EINVAL.Negated(), TryGet(machine, tools, deprecated, guest.Domain.Id));
        }

        Assert.Equal(XenErrno.EPERM.Negated(), Set(machine, guest, HvmParam.StorePfn, 5));
        Assert.Equal(XenErrno.EPERM.Negated(), TryGet(machine, guest, HvmParam.IdentPt));
        Assert.Equal(XenErrno.EPERM.Negated(), Set(machine, tools, HvmParam.IdentPt, 5));
        Assert.Equal(XenErrno.EPERM.Negated(), TryGet(machine, tools, HvmParam.IdentPt));
        Assert.Equal(0, Set(machine, tools, HvmParam.IdentPt, 5, guest.Domain.Id));
        Assert.Equal(5ul, Get(machine, tools, HvmParam.IdentPt, guest.Domain.Id));
    }

    [Fact]
    public void The_toolstack_s_parameters_meet_hvm_set_param_s_own_checks()
    {
        var (machine, guest, _) = ToolstackHypercallTests.Setup();
        using var owner = machine;
        var tools = HypercallMachine.AddDom0(machine).Vcpus[0];
        ushort d = guest.Domain.Id;
        long einval = XenErrno.EINVAL.Negated();

        Assert.Equal(einval, Set(machine, tools, HvmParam.TimerMode, 4, d));             // > HVMPTM_one_missed_tick_pending
        Assert.Equal(0, Set(machine, tools, HvmParam.TimerMode, 3, d));
        Assert.Equal(einval, Set(machine, tools, HvmParam.TripleFaultReason, 6, d));     // > SHUTDOWN_MAX
        Assert.Equal(0, Set(machine, tools, HvmParam.TripleFaultReason, 5, d));
        Assert.Equal(einval, Set(machine, tools, HvmParam.NrIoreqServerPages, 0, d));
        Assert.Equal(einval, Set(machine, tools, HvmParam.NrIoreqServerPages, 65, d));
        Assert.Equal(einval, Set(machine, tools, HvmParam.Altp2m, 4, d));                // > XEN_ALTP2M_limited
        Assert.Equal(einval, Set(machine, tools, HvmParam.McaCap, 1, d));                // no LMCE on this processor
        Assert.Equal(0, Set(machine, tools, HvmParam.McaCap, 0, d));

        // HVM_PARAM_VIRIDIAN: known feature bits, base_freq among them; then set once.
        Assert.Equal(einval, Set(machine, tools, HvmParam.Viridian, 2, d));
        Assert.Equal(einval, Set(machine, tools, HvmParam.Viridian, 1ul << 13 | 1, d));
        Assert.Equal(0, Set(machine, tools, HvmParam.Viridian, 1, d));
        Assert.Equal(XenErrno.EEXIST.Negated(), Set(machine, tools, HvmParam.Viridian, 3, d));
        Assert.Equal(0, Set(machine, tools, HvmParam.Viridian, 1, d));
        Assert.Equal(0, Set(machine, tools, HvmParam.NrIoreqServerPages, 8, d));
        Assert.Equal(XenErrno.EEXIST.Negated(), Set(machine, tools, HvmParam.NrIoreqServerPages, 9, d));

        // ACPI_S_STATE: 0 and 3 only; no domain is ever suspended here, so S3 is not supported and reads 0.
        Assert.Equal(einval, Set(machine, tools, HvmParam.AcpiSState, 1, d));
        Assert.Equal(XenErrno.ENOSYS.Negated(), Set(machine, tools, HvmParam.AcpiSState, 3, d));
        Assert.Equal(0, Set(machine, tools, HvmParam.AcpiSState, 0, d));
        Assert.Equal(0ul, Get(machine, tools, HvmParam.AcpiSState, d));
        Assert.Equal(DomainState.Running, guest.Domain.State);
    }
}
