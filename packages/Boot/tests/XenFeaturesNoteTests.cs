using System.Text;

namespace VmmKit.Boot.Tests;

/// <summary>XEN_ELFNOTE_FEATURES, as Xen 4.17's libelf-dominfo.c (elf_xen_parse_features).</summary>
public class XenFeaturesNoteTests
{
    private static byte[] Kernel(params byte[][] notes)
    {
        var w = new ElfWriter();
        w.Load(0x100000, w.Blob(new byte[0x100]), 0x1000);
        w.NoteSegment(w.Blob([.. ElfWriter.Phys32(0x100000), .. notes.SelectMany(n => n)]));
        return w.Build();
    }

    private static byte[] Features(string s) => ElfWriter.Note(10, Encoding.ASCII.GetBytes(s + "\0"));

    [Theory]
    [InlineData("writable_page_tables|!bogus")]
    [InlineData("!hvm_pirqs")]                        // a real feature libelf has no name for
    [InlineData("!dom0|!")]
    public void A_required_feature_libelf_does_not_know_refuses_the_image(string features)
    {
        // elf_xen_parse_features returns -1, so elf_xen_parse_note and elf_xen_parse fail.
        Assert.False(ElfImage.TryParse(Kernel(Features(features)), out _, out string error));
        Assert.Contains("FEATURES", error);
    }

    [Theory]
    [InlineData("!writable_page_tables|hvm_callback_vector|bogus||", false)]
    [InlineData("dom0", false)]
    [InlineData("auto_translated_physmap|!dom0", true)]
    public void Known_required_features_and_unknown_supported_ones_are_accepted(string features, bool dom0)
    {
        Assert.True(ElfImage.TryParse(Kernel(Features(features)), out var image, out string error), error);
        Assert.Equal(dom0, image!.RequiresDom0);
    }

    [Fact]
    public void A_feature_name_is_cut_at_63_characters()
    {
        // The parser copies at most 63 bytes of one feature and goes on from there (pos += len): "!dom0" after 58
        // characters and a '|' is read whole; after 62 characters its '!' ends the first feature, "dom0" follows.
        string pad58 = new('x', 58);
        Assert.True(ElfImage.TryParse(Kernel(Features(pad58 + "|!dom0")), out var image, out _));
        Assert.True(image!.RequiresDom0);
        Assert.True(ElfImage.TryParse(Kernel(Features(new string('x', 62) + "!dom0")), out image, out _));
        Assert.False(image!.RequiresDom0);                 // "xx..x!" then "dom0": neither is required
    }

    [Fact]
    public void A_features_string_without_its_NUL_is_ignored()
    {
        // elf_strval finds no terminator: elf_xen_parse_note ignores the note.
        var note = ElfWriter.Note(10, "!bogus"u8.ToArray());  // descsz 6, padded with zeros to 8
        note[^1] = (byte)'x';
        note[^2] = (byte)'x';
        Assert.True(ElfImage.TryParse(Kernel(note), out _, out string error), error);
    }
}
