namespace VmmKit.Devices.Tests;

/// <summary>The APIC timer of SDM Vol. 3A §11.5.4 on a TSC clock.</summary>
public class LocalApicTimerTests
{
    [Fact]
    public void One_shot_counts_down_at_the_divided_rate_and_fires_once()
    {
        var apic = Mmio.Enabled(out var host, out var clock);
        clock.Tsc = 1000;
        Mmio.Write(apic, 0x3E0, 0x1);                      // divide by 4
        Mmio.Write(apic, 0x320, 0x30);                     // one-shot, vector 0x30
        Mmio.Write(apic, 0x380, 100);
        Assert.Equal(1400ul, apic.NextTimerExpiry);
        clock.Tsc = 1040;
        Assert.Equal(90u, Mmio.Read(apic, 0x390));
        Assert.False(apic.HasPendingInterrupt);
        clock.Tsc = 1400;
        Assert.Equal(0x30, apic.GetHighestPendingVector());
        Assert.Equal(1, host.Kicks);
        Assert.Null(apic.NextTimerExpiry);
        Assert.Equal(0u, Mmio.Read(apic, 0x390));
        Assert.Equal(100u, Mmio.Read(apic, 0x380));        // initial count is kept
    }

    [Theory]
    [InlineData(0x0u, 2u)] [InlineData(0x1u, 4u)] [InlineData(0x2u, 8u)] [InlineData(0x3u, 16u)]
    [InlineData(0x8u, 32u)] [InlineData(0x9u, 64u)] [InlineData(0xAu, 128u)] [InlineData(0xBu, 1u)]
    public void Divide_configuration_follows_figure_11_10(uint dcr, uint divisor)
    {
        var apic = Mmio.Enabled(out _, out var clock);
        Mmio.Write(apic, 0x3E0, dcr);
        Mmio.Write(apic, 0x380, 10);
        Assert.Equal(clock.Tsc + (10ul * divisor), apic.NextTimerExpiry);
    }

    [Fact]
    public void Periodic_reloads_and_coalesces_missed_periods()
    {
        var apic = Mmio.Enabled(out _, out var clock);
        Mmio.Write(apic, 0x3E0, 0xB);                      // divide by 1
        Mmio.Write(apic, 0x320, 0x20000 | 0x31);           // periodic
        Mmio.Write(apic, 0x380, 50);
        clock.Tsc = 50;
        Assert.Equal(0x31, apic.AcknowledgeInterrupt());
        Assert.Equal(100ul, apic.NextTimerExpiry);
        Mmio.Write(apic, 0xB0, 0);
        clock.Tsc = 275;                                   // four periods missed
        Assert.Equal(0x31, apic.AcknowledgeInterrupt());
        Assert.False(apic.HasPendingInterrupt);            // delivered once
        Assert.Equal(300ul, apic.NextTimerExpiry);
        Assert.Equal(25u, Mmio.Read(apic, 0x390));
    }

    [Fact]
    public void A_masked_timer_counts_but_does_not_interrupt()
    {
        var apic = Mmio.Enabled(out var host, out var clock);
        Mmio.Write(apic, 0x320, 0x10030);
        Mmio.Write(apic, 0x380, 5);
        clock.Tsc = 100;
        Assert.False(apic.HasPendingInterrupt);
        Assert.Equal(0, host.Kicks);
        Assert.Null(apic.NextTimerExpiry);
    }

    [Fact]
    public void Writing_zero_stops_the_timer_and_a_new_divisor_keeps_the_current_count()
    {
        var apic = Mmio.Enabled(out _, out var clock);
        Mmio.Write(apic, 0x3E0, 0xB);
        Mmio.Write(apic, 0x380, 100);
        clock.Tsc = 40;
        Mmio.Write(apic, 0x3E0, 0x0);                      // divide by 2 from count 60 on
        Assert.Equal(60u, Mmio.Read(apic, 0x390));
        Assert.Equal(160ul, apic.NextTimerExpiry);
        Mmio.Write(apic, 0x380, 0);
        Assert.Null(apic.NextTimerExpiry);
        Assert.Equal(0u, Mmio.Read(apic, 0x390));
    }

    [Fact]
    public void Tsc_deadline_mode_fires_at_the_deadline_and_ignores_the_initial_count()
    {
        var apic = Mmio.Enabled(out _, out var clock);
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.TscDeadlineMsr, 500));   // ignored outside deadline mode
        apic.ReadMsr(LocalApic.TscDeadlineMsr, out ulong d);
        Assert.Equal(0ul, d);
        Mmio.Write(apic, 0x320, 0x40000 | 0x32);
        Assert.Equal(LocalApicTimerMode.TscDeadline, apic.TimerMode);
        Mmio.Write(apic, 0x380, 10);
        Assert.Equal(0u, Mmio.Read(apic, 0x380));
        Assert.Null(apic.NextTimerExpiry);
        apic.WriteMsr(LocalApic.TscDeadlineMsr, 500);
        Assert.Equal(500ul, apic.NextTimerExpiry);
        clock.Tsc = 499;
        Assert.False(apic.HasPendingInterrupt);
        clock.Tsc = 501;
        Assert.Equal(0x32, apic.AcknowledgeInterrupt());
        apic.ReadMsr(LocalApic.TscDeadlineMsr, out d);
        Assert.Equal(0ul, d);                              // disarmed after firing
        apic.WriteMsr(LocalApic.TscDeadlineMsr, 100);      // already passed: fires at once
        Assert.Equal(1u << (0x32 - 0x20), Mmio.Read(apic, 0x210));
    }

    [Fact]
    public void Changing_into_or_out_of_deadline_mode_disarms_but_one_shot_to_periodic_keeps_counting()
    {
        var apic = Mmio.Enabled(out _, out var clock);
        Mmio.Write(apic, 0x3E0, 0xB);
        Mmio.Write(apic, 0x380, 100);
        Mmio.Write(apic, 0x320, 0x20000 | 0x30);          // one-shot -> periodic
        Assert.Equal(100ul, apic.NextTimerExpiry);
        Mmio.Write(apic, 0x320, 0x40000 | 0x30);          // -> TSC deadline
        Assert.Null(apic.NextTimerExpiry);
        apic.WriteMsr(LocalApic.TscDeadlineMsr, 1000);
        Mmio.Write(apic, 0x320, 0x30);                     // -> one-shot
        Assert.Null(apic.NextTimerExpiry);
        clock.Tsc = 2000;
        Assert.False(apic.HasPendingInterrupt);
    }
}
