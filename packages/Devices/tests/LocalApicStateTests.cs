namespace VmmKit.Devices.Tests;

/// <summary><see cref="LocalApic.SaveRegisterPage"/> and <see cref="LocalApic.LoadRegisterPage"/>: a register file moved to another APIC.</summary>
public class LocalApicStateTests
{
    [Fact]
    public void A_saved_page_loads_into_another_apic_with_pending_vectors_and_a_rearmed_timer()
    {
        var apic = Mmio.Enabled(out _, out var clock);
        clock.Tsc = 1000;
        Mmio.Write(apic, 0x80, 0x20);                      // TPR
        Mmio.Write(apic, 0xD0, 0x0300_0000);               // LDR
        Mmio.Write(apic, 0x3E0, 0x1);                      // divide by 4
        Mmio.Write(apic, 0x320, 0x2_0040);                 // periodic, vector 0x40
        Mmio.Write(apic, 0x380, 100);
        Assert.True(apic.RequestInterrupt(0x51));
        Assert.Equal(0x51, apic.AcknowledgeInterrupt());   // in service
        Assert.True(apic.RequestInterrupt(0x61));          // pending above the in-service one
        var page = new byte[LocalApic.RegisterPageImageSize];
        apic.SaveRegisterPage(page);
        Assert.Equal(100u, BitConverter.ToUInt32(page, 0x390));   // current count, nothing elapsed
        Assert.Equal(1u << 0x11, BitConverter.ToUInt32(page, 0x120));   // ISR bit 0x51
        Assert.Equal(1u << 0x01, BitConverter.ToUInt32(page, 0x230));   // IRR bit 0x61

        var host = new RecordingHost();
        var copyClock = new FakeClock { Tsc = 5000 };
        var copy = new LocalApic(0, true, copyClock) { Host = host };
        copy.LoadRegisterPage(page);
        Assert.Equal((0x1FFu, 0x20u, 0x0300_0000u, 0x2_0040u, 0x1u), (Mmio.Read(copy, 0xF0), Mmio.Read(copy, 0x80), Mmio.Read(copy, 0xD0), Mmio.Read(copy, 0x320), Mmio.Read(copy, 0x3E0)));
        Assert.Equal(1, host.Kicks);                       // the pending vector is deliverable
        Assert.Equal(0x61, copy.AcknowledgeInterrupt());
        Assert.Equal(5400ul, copy.NextTimerExpiry);        // re-armed from its initial count at load (Xen's lapic_rearm)
        var again = new byte[LocalApic.RegisterPageImageSize];
        copy.SaveRegisterPage(again);
        Assert.Equal(0x60u, BitConverter.ToUInt32(again, 0xA0));    // PPR: the class of 0x61, now in service
    }

    [Fact]
    public void Read_only_bits_keep_their_rules_and_a_disabled_page_masks_the_lvt()
    {
        var page = new byte[LocalApic.RegisterPageImageSize];
        BitConverter.GetBytes(0xFFu).CopyTo(page, 0xF0);           // SVR: software disabled
        BitConverter.GetBytes(0xFFFF_FFFFu).CopyTo(page, 0x350);   // LVT LINT0 with every bit set
        BitConverter.GetBytes(0x1234u).CopyTo(page, 0xE0);         // DFR: bits 27:0 read as ones
        var apic = new LocalApic(0, true, new FakeClock());
        apic.LoadRegisterPage(page);
        Assert.Equal(0x1_B7FFu, Mmio.Read(apic, 0x350));          // writable bits and delivery status; masked
        Assert.Equal(0x0FFF_FFFFu, Mmio.Read(apic, 0xE0));
        Assert.Throws<ArgumentOutOfRangeException>(() => apic.LoadRegisterPage(new byte[16]));
    }
}
