namespace VmmKit.Boot;

/// <summary>
/// The XEN_ELFNOTE_FEATURES string ("feature|!required|..."), parsed as Xen 4.17's libelf-dominfo.c,
/// elf_xen_parse_features: features are split at '|' or after 63 characters, a '!' prefix makes one required, and
/// a required feature libelf has no name for makes the image unloadable.
/// </summary>
internal static class XenElfFeatures
{
    /// <summary>XENFEAT_dom0 (xen/include/public/features.h).</summary>
    public const int Dom0 = 11;

    // elf_xen_feature_names: the only features libelf knows by name, by XENFEAT_* number.
    private static readonly (string Name, int Bit)[] Names =
    [
        ("writable_page_tables", 0), ("writable_descriptor_tables", 1), ("auto_translated_physmap", 2),
        ("supervisor_mode_kernel", 3), ("pae_pgdir_above_4gb", 4), ("hvm_callback_vector", 8), ("dom0", Dom0),
    ];

    /// <summary>Parses <paramref name="features"/>; false when a required feature is unknown.</summary>
    /// <param name="features">The string, without its NUL.</param>
    /// <param name="required">The XENFEAT_* bits marked required.</param>
    /// <returns>False where elf_xen_parse_features returns -1.</returns>
    public static bool TryParseRequired(ReadOnlySpan<byte> features, out uint required)
    {
        required = 0;
        int pos = 0;
        while (pos < features.Length)
        {
            // The feature buffer holds 63 characters; a '|' ends a feature and is consumed with it.
            int len = 0;
            while (len < 63 && pos + len < features.Length && features[pos + len] != (byte)'|')
                len++;
            int take = len;
            if (len < 63 && pos + len < features.Length)
                take++;
            var feature = features.Slice(pos, len);
            pos += take;

            bool isRequired = feature.Length != 0 && feature[0] == (byte)'!';
            int bit = Lookup(isRequired ? feature[1..] : feature);
            if (isRequired && bit < 0)
                return false;
            if (isRequired)
                required |= 1u << bit;
        }

        return true;
    }

    private static int Lookup(ReadOnlySpan<byte> name)
    {
        foreach (var (n, bit) in Names)
        {
            if (name.Length == n.Length && System.Text.Encoding.ASCII.GetString(name) == n)
                return bit;
        }

        return -1;
    }
}
