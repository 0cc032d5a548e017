using VmmKit.Ept;

namespace VmmKit.Vmx.Tests;

/// <summary><see cref="Vmcs.GuestPagingRegisters"/>: what GuestPageWalker needs, from the guest-state area.</summary>
public class GuestPagingRegistersTests
{
    [Fact]
    public void Reads_the_guest_registers_and_takes_lma_from_the_ia32e_mode_guest_control()
    {
        var vmcs = new Vmcs();
        vmcs.Write(VmcsField.GuestCr0, 0x8000_0031);
        vmcs.Write(VmcsField.GuestCr3, 0x12_3000);
        vmcs.Write(VmcsField.GuestCr4, 0x20);
        vmcs.Write(VmcsField.GuestIa32Efer, 0x900); // LME | NXE, LMA not saved
        vmcs.Write(VmcsField.GuestRflags, 0x4_0002);
        GuestPagingRegisters r = vmcs.GuestPagingRegisters;
        Assert.Equal((0x8000_0031ul, 0x12_3000ul, 0x20ul, 0x900ul, 0x4_0002ul), (r.Cr0, r.Cr3, r.Cr4, r.Efer, r.Rflags));
        Assert.True(r.PagingEnabled);

        vmcs.Write(VmcsField.VmEntryControls, (ulong)VmEntryControls.Ia32eModeGuest);
        Assert.Equal(0xD00ul, vmcs.GuestPagingRegisters.Efer);
        vmcs.Write(VmcsField.VmEntryControls, 0);
        vmcs.Write(VmcsField.GuestIa32Efer, 0xD00); // a stale LMA without the control is not long mode
        Assert.Equal(0x900ul, vmcs.GuestPagingRegisters.Efer);
    }
}
