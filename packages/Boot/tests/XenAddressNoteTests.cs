namespace VmmKit.Boot.Tests;

/// <summary>
/// The PV address notes a PVH kernel may still carry, checked as Xen 4.17's libelf-dominfo.c,
/// elf_xen_addr_calc_check, does for every guest type before it forces virt_base and the offset to 0 for PVH.
/// </summary>
public class XenAddressNoteTests
{
    private const uint VirtBase = 3, PaddrOffset = 4, InitP2m = 15;

    private static byte[] Kernel(params byte[][] notes)
    {
        var w = new ElfWriter();
        w.Load(0x100000, w.Blob(new byte[0x100]), 0x2000);
        w.NoteSegment(w.Blob([.. ElfWriter.Phys32(0x100000), .. notes.SelectMany(n => n)]));
        return w.Build();
    }

    private static byte[] Num(uint type, ulong value) => ElfWriter.Note(type, BitConverter.GetBytes(value));

    [Fact]
    public void A_paddr_offset_without_a_virt_base_is_refused()
    {
        // "ERROR: ELF_PADDR_OFFSET set, VIRT_BASE unset".
        Assert.False(ElfImage.TryParse(Kernel(Num(PaddrOffset, 0)), out _, out string error));
        Assert.Contains("PADDR_OFFSET", error);
        Assert.True(ElfImage.TryParse(Kernel(Num(PaddrOffset, 0), Num(VirtBase, 0xFFFF_FFFF_8000_0000)), out _, out error), error);
        Assert.True(ElfImage.TryParse(Kernel(Num(PaddrOffset, ulong.MaxValue)), out _, out error), error);   // UNSET_ADDR
    }

    [Theory]
    [InlineData(0x100000UL, false)]
    [InlineData(0x101FFFUL, false)]
    [InlineData(0x102000UL, true)]            // pend: the range is half-open here
    [InlineData(0x0FFFFFUL, true)]
    [InlineData(0x80_0000_0000UL, true)]      // Linux's value, PUD_SIZE * PTRS_PER_PUD
    public void An_init_p2m_inside_the_kernel_is_refused(ulong p2m, bool accepted)
    {
        // "ERROR: P->M table base is out of bounds": p2m_base in [virt_kstart, virt_kend).
        Assert.Equal(accepted, ElfImage.TryParse(Kernel(Num(InitP2m, p2m)), out _, out string error));
        if (!accepted)
            Assert.Contains("P->M", error);
    }
}
