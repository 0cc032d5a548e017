using VmmKit.Ept;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>Where vCPUs get their processors: the emulator today, a hardware backend one day.</summary>
internal interface IProcessorProvider
{
    /// <summary>The VMX capability MSRs the processors report (controls are adjusted against them).</summary>
    VmxCapabilities Capabilities { get; }

    /// <summary>The host-state area every VMCS gets: where a VM exit returns, checked by VMLAUNCH/VMRESUME (SDM Vol. 3C §27.2.2).</summary>
    VmcsHostState HostState { get; }

    /// <summary>Creates a processor over <paramref name="memory"/>.</summary>
    IVirtualProcessor Create(MachineMemory memory);
}
