using VmmKit.Hypercall;
using VmmKit.TestSupport;

namespace VmmKit.Hypercall.Tests;

/// <summary>Every numeric constant of the package against the C headers.</summary>
public class AbiConstantTests
{
    private static void CheckAll(string[] headers, params (string C, long Value)[] pairs) => CheckAll(headers, false, pairs);

    private static void CheckAll(string[] headers, bool tools, params (string C, long Value)[] pairs)
    {
        var values = tools ? I386Layout.Evaluate(headers, pairs.Select(p => p.C).ToArray(), bits: 64, tools: true)
                           : XenAbiLayout.Evaluate(headers, pairs.Select(p => p.C).ToArray());
        for (int i = 0; i < pairs.Length; i++)
            Assert.True(pairs[i].Value == values[i], $"{pairs[i].C}: C# {pairs[i].Value}, C {values[i]}");
    }

    private static string Snake(string pascal) =>
        string.Concat(pascal.Select((ch, i) => char.IsUpper(ch) && i > 0 ? "_" + char.ToLowerInvariant(ch) : char.ToLowerInvariant(ch).ToString()));

    [Fact]
    public void Hypercall_numbers()
    {
        var map = new Dictionary<HypercallNumber, string>
        {
            [HypercallNumber.UpdateVaMappingOtherdomain] = "update_va_mapping_otherdomain",
            [HypercallNumber.Arch0] = "arch_0", [HypercallNumber.Arch1] = "arch_1", [HypercallNumber.Arch2] = "arch_2",
            [HypercallNumber.Arch3] = "arch_3", [HypercallNumber.Arch4] = "arch_4", [HypercallNumber.Arch5] = "arch_5",
            [HypercallNumber.Arch6] = "arch_6", [HypercallNumber.Arch7] = "arch_7",
        };
        var pairs = Enum.GetValues<HypercallNumber>()
            .Select(n => ("__HYPERVISOR_" + (map.TryGetValue(n, out var s) ? s : Snake(n.ToString())), (long)n)).ToArray();
        CheckAll(["xen/xen.h"], pairs);
    }

    [Fact]
    public void Errno_values()
    {
        CheckAll(["xen/errno.h"], Enum.GetValues<XenErrno>().Select(e => ("XEN_" + e, (long)e)).ToArray());
    }

    [Fact]
    public void Sub_operation_numbers()
    {
        // Some sub-operations are only visible to the toolstack (__XEN_TOOLS__) in the public headers.
        CheckAll(["xen/xen.h", "xen/version.h", "xen/sched.h", "xen/vcpu.h", "xen/memory.h", "xen/hvm/hvm_op.h", "xen/hvm/params.h", "xen/features.h", "xen/arch-x86/hvm/start_info.h"], true,
        [
            .. Enum.GetValues<XenVersionCommand>().Select(v => ("XENVER_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<SchedOp>().Select(v => ("SCHEDOP_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<VcpuOp>().Select(v => ("VCPUOP_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<RunstateState>().Select(v => ("RUNSTATE_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<ShutdownReason>().Select(v => ("SHUTDOWN_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<ConsoleIoCommand>().Select(v => ("CONSOLEIO_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<MemoryOp>().Select(v => ("XENMEM_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<XenMapSpace>().Select(v => ("XENMAPSPACE_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<HvmOp>().Select(v => ("HVMOP_" + Snake(v.ToString()), (long)v)),
            .. Enum.GetValues<HvmParam>().Where(v => v is not (HvmParam.Count or HvmParam.NestedHvm)).Select(v => ("HVM_PARAM_" + Snake(v.ToString()).ToUpperInvariant(), (long)v)),
            ("HVM_PARAM_NESTEDHVM", (long)HvmParam.NestedHvm),
            ("HVM_NR_PARAMS", (long)HvmParam.Count),
            ("HVM_PARAM_CALLBACK_TYPE_GSI", (long)HvmCallbackType.Gsi),
            ("HVM_PARAM_CALLBACK_TYPE_PCI_INTX", (long)HvmCallbackType.PciIntx),
            ("HVM_PARAM_CALLBACK_TYPE_VECTOR", (long)HvmCallbackType.Vector),
            .. Enum.GetValues<HvmMemmapType>().Select(v => ("XEN_HVM_MEMMAP_TYPE_" + Snake(v.ToString()).ToUpperInvariant(), (long)v)),
            ("XEN_HVM_START_MAGIC_VALUE", HvmStartInfo.MagicValue),
            ("XENMAPIDX_grant_table_status", unchecked((int)XenAddToPhysmap.GrantTableStatusIndex)),
            ("DOMID_FIRST_RESERVED", DomainId.FirstReserved), ("DOMID_SELF", DomainId.Self), ("DOMID_IO", DomainId.Io),
            ("DOMID_XEN", DomainId.Xen), ("DOMID_COW", DomainId.Cow), ("DOMID_INVALID", DomainId.Invalid), ("DOMID_IDLE", DomainId.Idle),
        ]);
    }

    [Fact]
    public void Feature_numbers()
    {
        var names = new Dictionary<XenFeature, string> { [XenFeature.ArmSmcccSupported] = "ARM_SMCCC_supported", [XenFeature.PaePgdirAbove4Gb] = "pae_pgdir_above_4gb", [XenFeature.Dom0] = "dom0" };
        // XENFEAT_grant_map_identity (12) is commented out in the public header (deprecated).
        CheckAll(["xen/xen.h", "xen/features.h"],
            Enum.GetValues<XenFeature>().Where(f => f != XenFeature.GrantMapIdentity).Select(f => ("XENFEAT_" + (names.TryGetValue(f, out var n) ? n : Snake(f.ToString())), (long)f)).ToArray());
    }
}
