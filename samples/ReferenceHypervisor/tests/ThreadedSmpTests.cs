namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Every <see cref="SmpTests"/> guest again on the threaded scheduler (<see cref="SchedulerMode.Threaded"/>): INIT and
/// start-up IPIs cross host threads (posted to the target's thread), VCPUOP_initialise/up/down reach a vCPU that has a
/// thread of its own, and the AP's first TSC read still falls between the BSP's reads (one domain clock).
/// </summary>
public sealed class ThreadedSmpTests : SmpTests
{
    private protected override SchedulerMode Scheduling => SchedulerMode.Threaded;
}
