namespace VmmKit.Devices.Tests;

/// <summary>IRR/ISR/TPR/PPR and acknowledge/EOI rules of SDM Vol. 3A §11.8.</summary>
public class LocalApicPriorityTests
{
    [Fact]
    public void Reset_state_is_the_power_up_state_of_11_4_7_1()
    {
        var apic = new LocalApic(0, true, new FakeClock());
        Assert.Equal(ApicMode.XApic, apic.Mode);
        Assert.Equal(0xFEE00900ul, apic.ReadMsr(LocalApic.ApicBaseMsr, out ulong b) == ApicAccessResult.Ok ? b : 0);
        Assert.Equal(0x00050014u, Mmio.Read(apic, 0x30));
        Assert.Equal(0xFFu, Mmio.Read(apic, 0xF0));
        Assert.Equal(0xFFFFFFFFu, Mmio.Read(apic, 0xE0));
        for (int lvt = 0x320; lvt <= 0x370; lvt += 0x10)
            Assert.Equal(0x10000u, Mmio.Read(apic, lvt));
        Assert.False(apic.IsSoftwareEnabled);
        var ap = new LocalApic(3, false, new FakeClock());
        Assert.Equal(0x03000000u, Mmio.Read(ap, 0x20));
        Assert.Equal(0xFEE00800ul, ap.ReadMsr(LocalApic.ApicBaseMsr, out b) == ApicAccessResult.Ok ? b : 0);
    }

    [Fact]
    public void A_software_disabled_apic_drops_fixed_interrupts_but_takes_nmi()
    {
        var host = new RecordingHost();
        var apic = new LocalApic(0, true, new FakeClock()) { Host = host };
        Assert.False(apic.RequestInterrupt(0x40));
        Assert.False(apic.HasPendingInterrupt);
        apic.RequestNmi();
        Assert.True(apic.HasPendingNmi);
        Assert.True(apic.AcknowledgeNmi());
        Assert.False(apic.HasPendingNmi);
        Assert.Equal(1, host.Kicks);
    }

    [Fact]
    public void The_highest_irr_vector_is_delivered_and_acknowledge_moves_it_to_isr()
    {
        var apic = Mmio.Enabled(out var host, out _);
        Assert.True(apic.RequestInterrupt(0x41));
        Assert.True(apic.RequestInterrupt(0x93));
        Assert.True(apic.RequestInterrupt(0x52));
        Assert.Equal(3, host.Kicks);
        Assert.Equal(0x93, apic.GetHighestPendingVector());
        Assert.Equal(0x93, apic.AcknowledgeInterrupt());
        Assert.Equal(1u << (0x93 - 0x80), Mmio.Read(apic, 0x100 + (0x93 / 32 * 0x10)));   // ISR
        Assert.Equal(0u, Mmio.Read(apic, 0x200 + (0x93 / 32 * 0x10)));                   // IRR
        Assert.Equal(0x90u, Mmio.Read(apic, 0xA0));                                       // PPR = ISRV class
        Assert.Equal(-1, apic.GetHighestPendingVector());                                  // 0x52 is below the class in service
        Assert.False(apic.HasPendingInterrupt);
    }

    [Fact]
    public void A_vector_in_the_same_class_as_the_one_in_service_waits_for_eoi()
    {
        var apic = Mmio.Enabled(out _, out _);
        apic.RequestInterrupt(0x60);
        Assert.Equal(0x60, apic.AcknowledgeInterrupt());
        apic.RequestInterrupt(0x6F);                     // higher vector, same priority class 6
        Assert.False(apic.HasPendingInterrupt);
        Mmio.Write(apic, 0xB0, 0);                       // EOI
        Assert.Equal(0x6F, apic.GetHighestPendingVector());
    }

    [Fact]
    public void Tpr_blocks_classes_at_or_below_it_and_ppr_follows_11_8_3_1()
    {
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0x80, 0x55);
        Assert.Equal(0x55u, Mmio.Read(apic, 0xA0));     // PPR = TPR when TPR class >= ISRV class
        apic.RequestInterrupt(0x5F);
        Assert.False(apic.HasPendingInterrupt);          // class 5 is not above PPR class 5
        apic.RequestInterrupt(0x60);
        Assert.Equal(0x60, apic.AcknowledgeInterrupt());
        Assert.Equal(0x60u, Mmio.Read(apic, 0xA0));     // ISRV class 6 > TPR class 5
        apic.Cr8 = 7;
        Assert.Equal(0x70, apic.Tpr);
        Assert.Equal(0x70u, Mmio.Read(apic, 0xA0));
        apic.Cr8 = 0;
        Mmio.Write(apic, 0xB0, 0);
        Assert.Equal(0x5F, apic.GetHighestPendingVector());
    }

    [Fact]
    public void Acknowledge_with_nothing_deliverable_returns_the_spurious_vector_and_changes_nothing()
    {
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0xF0, 0x1EF);
        Mmio.Write(apic, 0x80, 0xF0);
        apic.RequestInterrupt(0x80);
        Assert.Equal(0xEF, apic.AcknowledgeInterrupt());
        Assert.Equal(1u, Mmio.Read(apic, 0x240) & 1);   // 0x80 still in IRR
        Assert.Equal(0u, Mmio.Read(apic, 0x140));        // nothing in service
    }

    [Fact]
    public void Eoi_clears_the_highest_isr_bit_and_reports_level_triggered_ones()
    {
        var apic = Mmio.Enabled(out var host, out _);
        apic.RequestInterrupt(0x30, levelTriggered: true);
        Assert.Equal(0x30, apic.AcknowledgeInterrupt());
        apic.RequestInterrupt(0x40);
        Assert.Equal(0x40, apic.AcknowledgeInterrupt());   // nested: 0x40 preempts 0x30
        Assert.Equal(1u << 0x10, Mmio.Read(apic, 0x180 + 0x10));   // TMR bit of 0x30
        Mmio.Write(apic, 0xB0, 0);
        Assert.Empty(host.LevelEois);                      // 0x40 was edge-triggered
        Assert.Equal(1u << 0x10, Mmio.Read(apic, 0x110));  // 0x30 still in service
        Mmio.Write(apic, 0xB0, 0);
        Assert.Equal([(byte)0x30], host.LevelEois);
        Mmio.Write(apic, 0xB0, 0);                         // EOI with nothing in service is harmless
        Assert.Single(host.LevelEois);
    }

    [Fact]
    public void Illegal_vectors_set_esr_after_the_write_and_raise_the_error_lvt()
    {
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0x370, 0xFE);                     // LVT error: vector 0xFE, unmasked
        Assert.False(apic.RequestInterrupt(0x0F));
        Assert.Equal(0u, Mmio.Read(apic, 0x280));          // ESR reads the state latched by the last write
        Mmio.Write(apic, 0x280, 0);
        Assert.Equal(0x40u, Mmio.Read(apic, 0x280));       // receive illegal vector
        Assert.Equal(0xFE, apic.AcknowledgeInterrupt());
        Mmio.Write(apic, 0x300, 0x00004005);               // fixed IPI with vector 5 to self? destination 0: send illegal vector
        Mmio.Write(apic, 0x280, 0);
        Assert.Equal(0x20u, Mmio.Read(apic, 0x280));
        Mmio.Write(apic, 0x280, 0);
        Assert.Equal(0u, Mmio.Read(apic, 0x280));
    }

    [Fact]
    public void Software_disable_masks_every_lvt_entry_and_keeps_them_masked()
    {
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0x350, 0x700);                    // LINT0 ExtINT, unmasked
        Assert.Equal(0x700u, Mmio.Read(apic, 0x350));
        Mmio.Write(apic, 0xF0, 0xFF);                      // software disable
        Assert.Equal(0x10700u, Mmio.Read(apic, 0x350));
        Mmio.Write(apic, 0x350, 0x700);
        Assert.Equal(0x10700u, Mmio.Read(apic, 0x350));
    }

    [Fact]
    public void Lint_pins_follow_their_delivery_mode()
    {
        var apic = Mmio.Enabled(out _, out _);
        Assert.False(apic.SignalLocalInterrupt(0));        // masked at reset
        Mmio.Write(apic, 0x350, 0x31);                     // LINT0 fixed vector 0x31
        Mmio.Write(apic, 0x360, 0x400);                    // LINT1 NMI
        Assert.True(apic.SignalLocalInterrupt(0));
        Assert.True(apic.SignalLocalInterrupt(1));
        Assert.Equal(0x31, apic.AcknowledgeInterrupt());
        Assert.True(apic.AcknowledgeNmi());
        Mmio.Write(apic, 0x350, 0x700);                    // ExtINT: the 8259 answers, not the APIC
        Assert.False(apic.SignalLocalInterrupt(0));
    }

    [Fact]
    public void Read_only_bits_and_registers_keep_their_values()
    {
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0x30, 0);                         // version
        Assert.Equal(0x00050014u, Mmio.Read(apic, 0x30));
        Mmio.Write(apic, 0x320, 0xFFFFFFFF);               // LVT timer: only vector, mask, mode
        Assert.Equal(0x700FFu, Mmio.Read(apic, 0x320));
        Mmio.Write(apic, 0x360, 0xFFFFFFFF);               // LINT1: remote IRR and delivery status read-only
        Assert.Equal(0x1A7FFu, Mmio.Read(apic, 0x360));
        Mmio.Write(apic, 0xE0, 0);                         // DFR: cluster model, low bits read as 1
        Assert.Equal(0x0FFFFFFFu, Mmio.Read(apic, 0xE0));
        Mmio.Write(apic, 0xD0, 0x12345678);
        Assert.Equal(0x12000000u, Mmio.Read(apic, 0xD0));
    }

    [Fact]
    public void Mmio_narrow_reads_see_part_of_a_register_and_misaligned_writes_are_dropped()
    {
        var apic = Mmio.Enabled(out _, out _);
        Span<byte> one = stackalloc byte[1];
        apic.Read(apic.BaseAddress, 0x31, one);
        Assert.Equal(0x00, one[0]);
        apic.Read(apic.BaseAddress, 0x32, one);
        Assert.Equal(0x05, one[0]);
        apic.Read(apic.BaseAddress, 0x34, one);            // bytes 4-15 of a slot
        Assert.Equal(0, one[0]);
        apic.Write(apic.BaseAddress, 0x84, BitConverter.GetBytes(0x20u));   // misaligned: dropped
        Assert.Equal(0u, Mmio.Read(apic, 0x80));
        apic.Write(apic.BaseAddress, 0x80, [0x20]);        // 1-byte write: merged (Xen 4.17's vlapic_mmio_write)
        Assert.Equal(0x20u, Mmio.Read(apic, 0x80));
    }

    [Fact]
    public void A_reserved_register_sets_esr_illegal_register_address()
    {
        var apic = Mmio.Enabled(out _, out _);
        Assert.Equal(0u, Mmio.Read(apic, 0x2A0));
        Mmio.Write(apic, 0x280, 0);
        Assert.Equal(0x80u, Mmio.Read(apic, 0x280));
    }
}
