namespace VmmKit.Devices;

/// <summary>The LVT timer's mode, bits 18:17 of the LVT timer register (SDM Vol. 3A §11.5.4, Figure 11-8).</summary>
public enum LocalApicTimerMode
{
    /// <summary>00: counts down once from the initial count.</summary>
    OneShot = 0,
    /// <summary>01: reloads the initial count at every expiry.</summary>
    Periodic = 1,
    /// <summary>10: fires when the TSC reaches IA32_TSC_DEADLINE.</summary>
    TscDeadline = 2,
    /// <summary>11b: reserved; the timer does not run in it (Xen 4.17's vlapic_update_timer).</summary>
    Reserved = 3,
}
