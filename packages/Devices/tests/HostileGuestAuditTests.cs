namespace VmmKit.Devices.Tests;

/// <summary>
/// An audit of the devices against a hostile guest: each test does what a guest can do through port I/O, the xAPIC page
/// or the x2APIC MSRs, and checks the answer against the SDM (Vol. 3A chapter 11) and Xen's vlapic
/// (xen/arch/x86/hvm/vlapic.c, vpt.c), citing the rule's source.
/// </summary>
public class HostileGuestAuditTests
{
    [Fact]
    public void An_error_whose_lvt_error_vector_is_illegal_sets_receive_illegal_vector_instead_of_being_delivered()
    {
        // XSA-462 / Xen's vlapic_error: an unmasked LVT error entry with a vector below 16 is not delivered (delivering it
        // would be one more illegal-vector error, an endless loop); the error that tried folds "receive illegal vector"
        // (ESR bit 6) into the ESR instead, as the SDM's rule for a locally generated illegal vector says (§11.5.3).
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0x370, 0x05);                     // LVT error: unmasked, vector 5
        Assert.Equal(0u, Mmio.Read(apic, 0x010));          // a reserved register: "illegal register address"
        Mmio.Write(apic, 0x280, 0);                        // ESR: latch the errors since the last write
        Assert.Equal(0xC0u, Mmio.Read(apic, 0x280));
        Assert.Equal(-1, apic.GetHighestPendingVector());
        Assert.Equal(0u, Mmio.Read(apic, 0x200));          // nothing in IRR 31:0

        // Masked, the entry delivers nothing and adds nothing.
        Mmio.Write(apic, 0x370, 0x10005);
        Assert.Equal(0u, Mmio.Read(apic, 0x010));
        Mmio.Write(apic, 0x280, 0);
        Assert.Equal(0x80u, Mmio.Read(apic, 0x280));
    }

    [Fact]
    public void A_periodic_timer_of_one_tick_reloads_no_sooner_than_the_minimum_period()
    {
        // Initial count 1, divide by 1, periodic: an expiry every TSC tick. Xen's create_periodic_time
        // (xen/arch/x86/hvm/vpt.c) makes the period at least 100 us; the first expiry is the one programmed.
        var apic = Mmio.Enabled(out _, out var clock);
        apic.MinimumTimerPeriod = 100_000;
        clock.Tsc = 1000;
        Mmio.Write(apic, 0x3E0, 0xB);                      // divide by 1
        Mmio.Write(apic, 0x320, 0x20000 | 0x31);           // periodic, vector 0x31
        Mmio.Write(apic, 0x380, 1);
        Assert.Equal(1001ul, apic.NextTimerInterrupt);
        clock.Tsc = 1001;
        Assert.Equal(0x31, apic.AcknowledgeInterrupt());
        Mmio.Write(apic, 0xB0, 0);
        Assert.Equal(101_001ul, apic.NextTimerInterrupt);
        clock.Tsc = 50_000;
        Assert.Equal(1u, Mmio.Read(apic, 0x390));          // the count holds at the initial count meanwhile
        Assert.False(apic.HasPendingInterrupt);
        clock.Tsc = 101_001 + 250_000;                     // two and a half minimum periods later: one interrupt
        Assert.Equal(0x31, apic.AcknowledgeInterrupt());
        Assert.False(apic.HasPendingInterrupt);
        Assert.Equal(401_001ul, apic.NextTimerInterrupt);

        // A period longer than the minimum is kept as programmed.
        Mmio.Write(apic, 0x380, 300_000);
        Assert.Equal(clock.Tsc + 300_000, apic.NextTimerInterrupt);
    }

    [Fact]
    public void A_timer_expiry_that_can_raise_nothing_asks_for_no_wake_up()
    {
        // A halted vCPU whose timer is masked, or whose timer vector already waits in the IRR behind a higher TPR,
        // gains nothing from the expiry: a VMM that woke it (or ended its slice) for each one would spin the host for a
        // guest that asked for it with a few stores.
        var apic = Mmio.Enabled(out _, out var clock);
        Mmio.Write(apic, 0x3E0, 0xB);
        Mmio.Write(apic, 0x320, 0x30000 | 0x32);           // periodic, masked
        Mmio.Write(apic, 0x380, 10);
        Assert.Equal(10ul, apic.NextTimerExpiry);          // the count runs
        Assert.Null(apic.NextTimerInterrupt);

        Mmio.Write(apic, 0x80, 0xF0);                      // TPR above every vector
        Mmio.Write(apic, 0x320, 0x20000 | 0x32);           // unmasked
        Assert.Equal(10ul, apic.NextTimerInterrupt);
        clock.Tsc = 10;
        Assert.False(apic.HasPendingInterrupt);            // in the IRR, held back by the TPR
        Assert.Equal(20ul, apic.NextTimerExpiry);
        Assert.Null(apic.NextTimerInterrupt);
        Mmio.Write(apic, 0x80, 0);
        Assert.Equal(0x32, apic.AcknowledgeInterrupt());
        Assert.Equal(20ul, apic.NextTimerInterrupt);       // out of the IRR: the next expiry raises it again

        Mmio.Write(apic, 0xF0, 0xFF);                      // software disabled: every LVT entry masked
        Assert.Null(apic.NextTimerInterrupt);
    }

    [Fact]
    public void A_timer_armed_just_before_the_clock_wraps_fires_once_instead_of_at_every_query()
    {
        // A guest that may set its TSC (WRMSR IA32_TSC) puts it just below 2^64 and arms a periodic timer: an expiry
        // computed modulo 2^64 lies in the past at once, so every query would fire it again and ask for an immediate
        // exit. The expiry saturates at the clock's end instead; a reload past it stops the timer.
        var apic = Mmio.Enabled(out _, out var clock);
        clock.Tsc = ulong.MaxValue - 50;
        Mmio.Write(apic, 0x3E0, 0xB);
        Mmio.Write(apic, 0x320, 0x20000 | 0x33);           // periodic, vector 0x33
        Mmio.Write(apic, 0x380, 100);
        Assert.Equal(ulong.MaxValue, apic.NextTimerExpiry);
        Assert.False(apic.HasPendingInterrupt);
        clock.Tsc = ulong.MaxValue;
        Assert.Equal(0x33, apic.AcknowledgeInterrupt());
        Mmio.Write(apic, 0xB0, 0);
        Assert.False(apic.HasPendingInterrupt);
        Assert.Null(apic.NextTimerExpiry);
    }

    [Fact]
    public void The_debug_port_takes_an_access_of_no_bytes_without_throwing()
    {
        // IBusDevice: a device never throws for any offset or width. An empty access (a VMM's split of an access that
        // ends at the range's start) indexed data[0].
        var sink = new RecordingSink();
        var port = new DebugConsolePort(sink);
        port.Read(DebugConsolePort.DefaultPort, 0, Span<byte>.Empty);
        port.Write(DebugConsolePort.DefaultPort, 0, ReadOnlySpan<byte>.Empty);
        Assert.Empty(sink.Bytes);
    }
}
