namespace VmmKit.Devices.Tests;

/// <summary>
/// The local APIC against Xen 4.17's vlapic (xen/arch/x86/hvm/vlapic.c), statement by statement: each test is a guest
/// access whose answer differed from Xen's and cites the function whose rule it follows now.
/// </summary>
public class XenVlapicComparisonTests
{
    private static LocalApic X2(out FakeClock clock)
    {
        var apic = Mmio.Enabled(out _, out clock);
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable | LocalApic.ApicBaseExtd));
        return apic;
    }

    private static uint ReadBytes(LocalApic apic, int offset, int length)
    {
        Span<byte> data = stackalloc byte[8];
        data.Fill(0xAA);
        apic.Read(apic.BaseAddress, (ulong)offset, data[..length]);
        uint value = 0;
        for (int i = 0; i < Math.Min(length, 4); i++)
            value |= (uint)data[i] << (8 * i);
        return value;
    }

    [Theory]
    [InlineData(0x832u, 0x1031ul)]                 // LVT timer: delivery status
    [InlineData(0x833u, 0x1031ul)]                 // thermal
    [InlineData(0x834u, 0x1431ul)]                 // performance counters, NMI delivery
    [InlineData(0x835u, 0x5031ul)]                 // LINT0: delivery status and remote IRR
    [InlineData(0x836u, 0x5031ul)]                 // LINT1
    [InlineData(0x837u, 0x1031ul)]                 // error
    public void X2apic_lvt_writes_with_the_read_only_status_bits_set_are_accepted_and_the_bits_read_back_zero(uint msr, ulong value)
    {
        // Xen 4.17's guest_wrmsr_x2apic checks an LVT write against vlapic_lvt_mask's LVT_MASK/LINT_MASK, which hold
        // delivery status (bit 12) and, for LINT0/1, remote IRR (bit 14): no #GP. Both bits stay read-only (SDM Vol. 3A
        // §11.5.1): they read back 0, where Xen stores them (README, deliberate differences).
        var apic = X2(out _);
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(msr, value));
        Assert.Equal(ApicAccessResult.Ok, apic.ReadMsr(msr, out ulong back));
        Assert.Equal(value & ~0x5000ul, back);
    }

    [Theory]
    [InlineData(0x837u, 0x400ul)]                  // LVT error has no delivery mode
    [InlineData(0x835u, 0x20000ul)]                // LINT0 bit 17
    [InlineData(0x833u, 0x8000ul)]                 // thermal has no trigger mode
    public void X2apic_lvt_writes_outside_xens_lvt_masks_fault(uint msr, ulong value)
    {
        var apic = X2(out _);
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.WriteMsr(msr, value));
    }

    [Fact]
    public void Narrow_mmio_writes_inside_a_register_merge_into_it()
    {
        // Xen 4.17's vlapic_mmio_write: a 1- or 2-byte store that fits in the register's 32 bits is merged into the
        // register's value (vlapic_read_aligned) and written as a whole.
        var apic = Mmio.Enabled(out _, out _);
        apic.Write(apic.BaseAddress, 0x80, [0x40]);                       // TPR, one byte
        Assert.Equal(0x40u, Mmio.Read(apic, 0x80));
        Mmio.Write(apic, 0x320, 0x1_0031);                                // LVT timer: masked one-shot, vector 0x31
        apic.Write(apic.BaseAddress, 0x322, [0x02, 0x00]);                // bits 31:16: periodic, unmasked
        Assert.Equal(0x2_0031u, Mmio.Read(apic, 0x320));
        apic.Write(apic.BaseAddress, 0x81, [0x7F]);                       // TPR byte 1: TPR keeps bits 7:0 only
        Assert.Equal(0x40u, Mmio.Read(apic, 0x80));

        // An access that does not fit in the register's 32 bits is dropped.
        apic.Write(apic.BaseAddress, 0x82, [1, 2, 3, 4]);
        apic.Write(apic.BaseAddress, 0x80, [0x50, 0, 0, 0, 0, 0, 0, 0]);
        apic.Write(apic.BaseAddress, 0x84, [0x60]);
        Assert.Equal(0x40u, Mmio.Read(apic, 0x80));
    }

    [Fact]
    public void Mmio_reads_that_do_not_fit_in_the_register_read_zero()
    {
        // Xen 4.17's vlapic_mmio_read: only an access with (offset & 0xF) + length <= 4 reads the register.
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0x320, 0x1_0031);
        Assert.Equal(0x0001u, ReadBytes(apic, 0x322, 2));
        Assert.Equal(0x31u, ReadBytes(apic, 0x320, 1));
        Assert.Equal(0u, ReadBytes(apic, 0x320, 8));                     // 64 bits wide
        Assert.Equal(0u, ReadBytes(apic, 0x322, 4));                     // runs into bytes 4-7 of the slot
        Assert.Equal(0u, ReadBytes(apic, 0x324, 4));
    }

    [Fact]
    public void A_read_across_the_page_end_leaves_the_bytes_of_the_next_page_alone()
    {
        // Xen's emulator splits an access at the page end (hvmemul_linear_mmio_access): the APIC answers for its own
        // bytes only; what lies past the page is the caller's to fill.
        var apic = Mmio.Enabled(out _, out _);
        Span<byte> data = stackalloc byte[8];
        data.Fill(0xAA);
        apic.Read(apic.BaseAddress, 0xFFC, data);
        Assert.Equal(new byte[] { 0, 0, 0, 0, 0xAA, 0xAA, 0xAA, 0xAA }, data.ToArray());
        data.Fill(0xAA);
        apic.Read(apic.BaseAddress, LocalApic.PageSize, data);
        Assert.Equal(0xAA, data[0]);
    }

    [Fact]
    public void Enabling_a_disabled_apic_restores_the_initial_apic_id()
    {
        // Xen 4.17's guest_wrmsr_apic_base: setting EN calls vlapic_reset, whose ID is the initial one (so does the
        // SDM's power-up state, §11.4.3).
        var apic = Mmio.Enabled(out _, out _, id: 3);
        Mmio.Write(apic, 0x20, 0x0A00_0000);
        Assert.Equal(0x0A00_0000u, Mmio.Read(apic, 0x20));
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000));
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable));
        Assert.Equal(0x0300_0000u, Mmio.Read(apic, 0x20));
    }

    [Fact]
    public void The_xapic_window_cannot_move()
    {
        // Xen 4.17's guest_wrmsr_apic_base: in xAPIC mode (EN set, EXTD clear) the base must be 0xFEE00000, else #GP;
        // disabled or in x2APIC mode the address bits are not checked.
        var apic = Mmio.Enabled(out _, out _);
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFED00000 | LocalApic.ApicBaseEnable));
        Assert.Equal(LocalApic.DefaultBaseAddress, apic.BaseAddress);
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable | LocalApic.ApicBaseExtd | 0x1000));
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFED00000));
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFED00000 | LocalApic.ApicBaseEnable));
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable));
    }

    [Fact]
    public void The_reserved_timer_mode_stops_the_timer_and_reads_the_counts_as_zero()
    {
        // Xen 4.17's vlapic_update_timer runs the timer only in one-shot and periodic mode; vlapic_reg_write ignores an
        // initial-count write in the other modes and vlapic_read_aligned reads both counts as 0 in them.
        var apic = Mmio.Enabled(out _, out var clock);
        Mmio.Write(apic, 0x3E0, 0xB);
        Mmio.Write(apic, 0x320, 0x31);
        Mmio.Write(apic, 0x380, 100);
        Mmio.Write(apic, 0x320, 0x6_0031);                 // mode 11b
        Assert.Equal(LocalApicTimerMode.Reserved, apic.TimerMode);
        Assert.Equal((0u, 0u), (Mmio.Read(apic, 0x380), Mmio.Read(apic, 0x390)));
        Assert.Null(apic.NextTimerExpiry);
        Mmio.Write(apic, 0x380, 50);                       // ignored
        clock.Tsc = 200;
        Assert.False(apic.HasPendingInterrupt);
        Mmio.Write(apic, 0x320, 0x31);                     // back to one-shot: the count is kept, the timer stays stopped
        Assert.Equal((100u, 0u), (Mmio.Read(apic, 0x380), Mmio.Read(apic, 0x390)));
        Assert.Null(apic.NextTimerExpiry);
    }

    [Fact]
    public void Restored_vectors_below_16_are_dropped()
    {
        // Vectors 0-15 never enter IRR, ISR or TMR (SDM Vol. 3A §11.5.2, Xen 4.17's vlapic_set_irq). Xen's
        // lapic_load_regs checks nothing; an image holding them would have vlapic_has_pending_irq offer an exception
        // vector as an interrupt. They are cleared here instead.
        var page = new byte[LocalApic.RegisterPageImageSize];
        BitConverter.GetBytes(0x1FFu).CopyTo(page, 0xF0);
        BitConverter.GetBytes(0x0002_0020u).CopyTo(page, 0x100);   // ISR: vectors 5 and 17
        BitConverter.GetBytes(0x0004_8000u).CopyTo(page, 0x180);   // TMR: vectors 15 and 18
        BitConverter.GetBytes(0x0004_0001u).CopyTo(page, 0x200);   // IRR: vectors 0 and 18
        var apic = new LocalApic(0, true, new FakeClock());
        apic.LoadRegisterPage(page);
        Assert.Equal((0x0002_0000u, 0x0004_0000u, 0x0004_0000u), (Mmio.Read(apic, 0x100), Mmio.Read(apic, 0x180), Mmio.Read(apic, 0x200)));
    }

    [Theory]
    [InlineData(0xFFFF_FFFFu, true)]               // flat
    [InlineData(0x0FFF_FFFFu, true)]               // cluster
    [InlineData(0x5FFF_FFFFu, false)]              // a reserved model matches nothing
    public void Only_the_flat_and_cluster_models_match_logical_destinations(uint dfr, bool matches)
    {
        // Xen 4.17's vlapic_match_logical_addr: DFR flat or cluster, any other model matches no logical destination.
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0xD0, 0x1100_0000);               // LDR: cluster 1, member bit 0 (flat: bits 0 and 4)
        Mmio.Write(apic, 0xE0, dfr);
        var command = new ApicInterruptCommand(0x40, ApicDeliveryMode.Fixed, true, true, false, ApicDestinationShorthand.None, 0x11, false);
        Assert.Equal(matches, apic.MatchesDestination(in command));
    }

    [Fact]
    public void A_fixed_ipi_with_the_level_bit_arrives_edge_triggered()
    {
        // The ICR's trigger mode only means something for INIT level de-assert (SDM Vol. 3A §11.6.1); Xen 4.17's
        // vlapic_accept_irq sets a fixed or lowest-priority IPI with vlapic_set_irq(..., 0): TMR clear, and its EOI
        // is no level-triggered one.
        var apic = Mmio.Enabled(out var host, out _);
        Mmio.Write(apic, 0x300, 0x4_8040);                 // self, level, vector 0x40
        Assert.Equal(0u, Mmio.Read(apic, 0x180 + 0x20));   // TMR 63:32
        Mmio.Write(apic, 0x310, 0);
        Mmio.Write(apic, 0x300, 0xC050);                   // physical destination 0 (this APIC), level, vector 0x50
        Assert.Equal(0u, Mmio.Read(apic, 0x180 + 0x20));   // TMR 95:64
        Assert.Equal(0x50, apic.AcknowledgeInterrupt());
        Mmio.Write(apic, 0xB0, 0);
        Assert.Equal(0x40, apic.AcknowledgeInterrupt());
        Mmio.Write(apic, 0xB0, 0);
        Assert.Empty(host.LevelEois);
    }

    [Fact]
    public void The_arbitration_priority_register_reads_zero()
    {
        // APR is a P6-family register (SDM Vol. 3A Table 11-1: not supported by the Pentium 4 and later); Xen 4.17's
        // vlapic_read_aligned returns the page's APR slot, which nothing sets.
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0x80, 0x20);
        Assert.True(apic.RequestInterrupt(0x51));
        Assert.Equal(0u, Mmio.Read(apic, 0x90));
        Mmio.Write(apic, 0x280, 0);
        Assert.Equal(0u, Mmio.Read(apic, 0x280));          // not a reserved register: no ESR bit
    }

    [Fact]
    public void The_initial_count_kept_in_the_reserved_timer_mode_survives_save_and_restore()
    {
        // Xen 4.17's lapic_save_regs saves the register page as it is: TMICT holds the count in mode 11b too, though
        // vlapic_read_aligned shows the guest 0.
        var apic = Mmio.Enabled(out _, out _);
        Mmio.Write(apic, 0x320, 0x31);
        Mmio.Write(apic, 0x380, 100);
        Mmio.Write(apic, 0x320, 0x6_0031);
        var page = new byte[LocalApic.RegisterPageImageSize];
        apic.SaveRegisterPage(page);
        Assert.Equal(100u, BitConverter.ToUInt32(page, 0x380));
        var copy = new LocalApic(0, true, new FakeClock());
        copy.LoadRegisterPage(page);
        Assert.Null(copy.NextTimerExpiry);
        Mmio.Write(copy, 0x320, 0x31);
        Assert.Equal(100u, Mmio.Read(copy, 0x380));
    }
}
