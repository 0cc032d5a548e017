namespace VmmKit.EventChannel;

/// <summary>A vCPU's event channel state: where its <c>vcpu_info</c> is and its VIRQ bindings (Xen's <c>virq_to_evtchn</c>).</summary>
internal sealed class VcpuEventState(int id)
{
    public readonly int Id = id;
    /// <summary>Host address of this vCPU's <c>vcpu_info</c>, 0 when it has none.</summary>
    public nint VcpuInfo;
    /// <summary>True once the guest moved <c>vcpu_info</c> with VCPUOP_register_vcpu_info.</summary>
    public bool VcpuInfoRegistered;
    /// <summary><c>virq_to_evtchn[NR_VIRQS]</c>: the port bound to each VIRQ on this vCPU, 0 for none.</summary>
    public readonly uint[] VirqToPort = new uint[VirqRules.Count];
}
