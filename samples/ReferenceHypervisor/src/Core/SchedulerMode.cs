namespace VmmKit.ReferenceHypervisor;

/// <summary>How <see cref="Machine.Run"/> runs the vCPUs (<c>vmmkit-hv --scheduler</c>).</summary>
internal enum SchedulerMode
{
    /// <summary>
    /// Every vCPU of every domain takes turns on the caller's thread, one slice each, round-robin; guest time is
    /// instruction time and a run is deterministic (same transcript, same instruction counts). The default while every
    /// guest has one vCPU (<see cref="Machine.ChooseScheduling"/>).
    /// </summary>
    RoundRobin,

    /// <summary>
    /// Each vCPU runs on a host thread of its own (<see cref="VcpuThread"/>), so a domain's vCPUs really run at the same
    /// time; the caller's thread serves the control domain and skips a blocked domain's clock to its next timer deadline.
    /// RDTSC, RDTSCP and RDMSR of IA32_TSC exit and read the domain's one clock (<see cref="GuestTime.ReadTsc"/>). The
    /// default once a guest has several vCPUs.
    /// </summary>
    Threaded,
}
