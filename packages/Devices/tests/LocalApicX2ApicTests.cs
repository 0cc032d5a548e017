namespace VmmKit.Devices.Tests;

/// <summary>IA32_APIC_BASE transitions and the x2APIC MSR rules of SDM Vol. 3A §11.12.</summary>
public class LocalApicX2ApicTests
{
    private static LocalApic X2(out RecordingHost host, out FakeClock clock, uint id = 0x21)
    {
        var apic = Mmio.Enabled(out host, out clock, id);
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable | LocalApic.ApicBaseExtd));
        Assert.Equal(ApicMode.X2Apic, apic.Mode);
        return apic;
    }

    [Fact]
    public void X2apic_msrs_fault_outside_x2apic_mode()
    {
        var apic = Mmio.Enabled(out _, out _);
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.ReadMsr(0x802, out _));
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.WriteMsr(0x808, 0));
        Assert.Equal(ApicAccessResult.NotApicMsr, apic.ReadMsr(0x10, out _));
    }

    [Theory]
    [InlineData(0ul, 0ul, true)]                                   // xAPIC -> disabled
    [InlineData(1ul << 10, 0ul, false)]                            // EXTD without EN
    [InlineData(0xFEE00000ul | (1ul << 11) | (1ul << 9), 0ul, false)]   // reserved bit 9
    [InlineData(0xFEE00000ul | (1ul << 11) | 0xFFul, 0ul, false)]       // reserved bits 7:0
    [InlineData(0xFEE00000ul | (1ul << 11) | (1ul << 60), 0ul, false)] // above MAXPHYADDR (52)
    [InlineData(0xFED00000ul | (1ul << 11), 0ul, false)]           // relocation: Xen 4.17's guest_wrmsr_apic_base #GPs
    public void Apic_base_writes_are_checked(ulong value, ulong unused, bool ok)
    {
        _ = unused;
        var apic = Mmio.Enabled(out _, out _);
        Assert.Equal(ok ? ApicAccessResult.Ok : ApicAccessResult.GeneralProtection, apic.WriteMsr(LocalApic.ApicBaseMsr, value));
    }

    [Fact]
    public void Invalid_mode_transitions_fault()
    {
        var apic = X2(out _, out _);
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable));  // x2APIC -> xAPIC
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000));                                           // -> disabled
        Assert.Equal(ApicAccessResult.GeneralProtection,
            apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable | LocalApic.ApicBaseExtd));                     // disabled -> x2APIC
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable));
        Assert.Equal(0xFFu, Mmio.Read(apic, 0xF0));                                                                                   // power-up state again
    }

    [Fact]
    public void Id_and_ldr_are_the_32_bit_id_and_its_cluster_form()
    {
        var apic = X2(out _, out _, id: 0x21);
        Assert.Equal(ApicAccessResult.Ok, apic.ReadMsr(0x802, out ulong id));
        Assert.Equal(0x21ul, id);
        Assert.Equal(ApicAccessResult.Ok, apic.ReadMsr(0x80D, out ulong ldr));
        Assert.Equal((2ul << 16) | (1ul << 1), ldr);
        Assert.Equal(0u, Mmio.Read(apic, 0x20));                          // the MMIO page is off in x2APIC mode
    }

    [Theory]
    [InlineData(0x802u)] [InlineData(0x803u)] [InlineData(0x80Au)] [InlineData(0x80Du)] [InlineData(0x810u)] [InlineData(0x839u)]
    [InlineData(0x809u)] [InlineData(0x80Eu)] [InlineData(0x831u)] [InlineData(0x800u)] [InlineData(0x8FFu)]
    public void Writes_to_read_only_and_reserved_registers_fault(uint msr)
    {
        var apic = X2(out _, out _);
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.WriteMsr(msr, 0));
    }

    [Theory]
    [InlineData(0x80Bu)] [InlineData(0x83Fu)] [InlineData(0x809u)] [InlineData(0x80Cu)] [InlineData(0x80Eu)] [InlineData(0x831u)] [InlineData(0x82Fu)]
    public void Reads_of_write_only_and_reserved_registers_fault(uint msr)
    {
        var apic = X2(out _, out _);
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.ReadMsr(msr, out _));
    }

    [Theory]
    [InlineData(0x808u, 0x100ul)]                  // TPR bits 63:8
    [InlineData(0x80Bu, 1ul)]                      // EOI must be written with 0
    [InlineData(0x828u, 1ul)]                      // ESR must be written with 0
    [InlineData(0x80Fu, 0x1000ul)]                 // SVR bit 12: EOI-broadcast suppression not supported
    [InlineData(0x832u, 0x80000ul)]                // LVT timer reserved bit 19
    [InlineData(0x837u, 0x10000_0000ul)]           // LVT error bits 63:32
    [InlineData(0x838u, 0x1_0000_0000ul)]          // initial count is 32 bits
    [InlineData(0x83Eu, 0x4ul)]                    // divide configuration bit 2
    [InlineData(0x83Fu, 0x100ul)]                  // SELF IPI vector only
    [InlineData(0x830u, 0x1000ul)]                 // ICR delivery status
    [InlineData(0x830u, 0x20000ul)]                // ICR bit 17
    public void Reserved_bits_fault(uint msr, ulong value)
    {
        var apic = X2(out _, out _);
        Assert.Equal(ApicAccessResult.GeneralProtection, apic.WriteMsr(msr, value));
    }

    [Fact]
    public void Self_ipi_and_eoi_through_msrs()
    {
        var apic = X2(out var host, out _);
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(0x83F, 0x45));
        Assert.Equal(1, host.Kicks);
        Assert.Equal(0x45, apic.AcknowledgeInterrupt());
        Assert.Equal(ApicAccessResult.Ok, apic.ReadMsr(0x80A, out ulong ppr));
        Assert.Equal(0x40ul, ppr);
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(0x80B, 0));
        Assert.Equal(ApicAccessResult.Ok, apic.ReadMsr(0x80A, out ppr));
        Assert.Equal(0ul, ppr);
    }

    [Fact]
    public void Icr_is_one_64_bit_register()
    {
        var apic = X2(out _, out _);
        Assert.Equal(ApicAccessResult.Ok, apic.WriteMsr(0x830, (0x1234ul << 32) | 0x4050));
        Assert.Equal(ApicAccessResult.Ok, apic.ReadMsr(0x830, out ulong icr));
        Assert.Equal((0x1234ul << 32) | 0x4050, icr);
    }
}
