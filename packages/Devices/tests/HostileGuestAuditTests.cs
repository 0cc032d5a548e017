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
}
