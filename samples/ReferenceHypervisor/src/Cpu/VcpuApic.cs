using VmmKit.Devices;

namespace VmmKit.ReferenceHypervisor.Cpu;

/// <summary>
/// A vCPU's local APIC (VmmKit.Devices' <see cref="LocalApic"/>), as Xen emulates one for every HVM/PVH vCPU (vlapic):
/// its timer counts the vCPU's TSC, its IPIs travel on the domain's <see cref="ApicBus"/>, and a newly pending
/// interrupt kicks the vCPU so the next VM entry injects it.
/// </summary>
/// <remarks>
/// The APIC is reached through the x2APIC MSRs only (<see cref="MsrExit"/>): this hypervisor emulates no xAPIC MMIO page,
/// so the vCPU starts with IA32_APIC_BASE in x2APIC mode (EN and EXTD set), as firmware leaves it on machines whose
/// APIC IDs need it (SDM Vol. 3A §11.12.5). Linux then uses x2APIC ops from the start ("x2apic: enabled by BIOS").
/// </remarks>
internal sealed class VcpuApic : ILocalApicHost, IGuestClock
{
    private readonly VirtualCpu _vcpu;

    /// <summary>Creates vCPU <paramref name="vcpu"/>'s APIC (APIC ID = vCPU id, BSP for vCPU 0) on its domain's bus.</summary>
    public VcpuApic(VirtualCpu vcpu)
    {
        _vcpu = vcpu;
        Apic = new LocalApic((uint)vcpu.Id, vcpu.Id == 0, this) { Host = this };
        Apic.WriteMsr(LocalApic.ApicBaseMsr, LocalApic.DefaultBaseAddress | LocalApic.ApicBaseEnable | LocalApic.ApicBaseExtd);
        vcpu.Domain.ApicBus.Add(Apic);
    }

    /// <summary>The register model.</summary>
    public LocalApic Apic { get; }

    /// <inheritdoc/>
    public ulong Tsc => GuestTime.Tsc(_vcpu);

    /// <inheritdoc/>
    public void InterruptPending(LocalApic apic) => _vcpu.Kick();

    /// <inheritdoc/>
    public void InitReceived(LocalApic apic)
    {
        // Starting application processors with INIT/SIPI (how Linux brings up a PVH guest's CPUs) is not offered yet:
        // a domain has one vCPU.
    }

    /// <inheritdoc/>
    public void StartupReceived(LocalApic apic, byte vector)
    {
    }

    /// <inheritdoc/>
    public void LevelTriggeredEoi(LocalApic apic, byte vector)
    {
        // No I/O APIC: nothing sends level-triggered interrupts.
    }
}
