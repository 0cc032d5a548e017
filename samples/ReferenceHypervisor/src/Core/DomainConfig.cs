using VmmKit.Boot;

namespace VmmKit.ReferenceHypervisor;

/// <summary>What the toolstack asks for when it builds a domain (a tiny subset of an xl config).</summary>
/// <param name="Name">A name for diagnostics.</param>
/// <param name="Kernel">The PVH kernel file's bytes.</param>
/// <param name="MemoryBytes">Guest RAM, from guest-physical 0.</param>
/// <param name="CommandLine">The kernel command line (hvm_start_info.cmdline_paddr).</param>
/// <param name="Modules">Boot modules (hvm_start_info.modlist_paddr).</param>
/// <param name="ConsoleLine">Receives each line the guest prints; null keeps the transcript only.</param>
/// <param name="XenStore">
/// False builds a domain without XenStore, as Xen's dom0less domains without "xen,enhanced": HVM_PARAM_STORE_PFN and
/// STORE_EVTCHN stay 0, and Linux skips xenbus instead of waiting for a xenstored that is not there.
/// </param>
/// <param name="Vcpus">
/// The number of vCPUs (xl's <c>vcpus</c>, 1 to <see cref="Domain.MaxGuestVcpus"/>): vCPU 0 starts at the PVH entry, the
/// others wait for INIT/SIPI or VCPUOP_initialise/VCPUOP_up; the MADT lists them all.
/// </param>
internal sealed record DomainConfig(string Name, byte[] Kernel, ulong MemoryBytes, string CommandLine = "",
    IReadOnlyList<PvhModule>? Modules = null, Action<string>? ConsoleLine = null, bool XenStore = true, int Vcpus = 1);
