using System.Collections.Frozen;

namespace VmmKit.Vmx;

/// <summary>
/// Metadata of VMCS field encodings: width, type and access type derived from the encoding bits
/// (SDM Vol. 3C §25.11.2 "VMREAD, VMWRITE, and Encodings of VMCS Fields"), and the SDM name
/// from Appendix B.
/// </summary>
public static partial class VmcsFieldInfo
{
    private static readonly FrozenDictionary<VmcsField, string> Names;
    private static readonly VmcsField[] AllFields;

    // A static constructor runs after the field initializers of every partial part, so Catalog is ready here.
    static VmcsFieldInfo()
    {
        Names = BuildNames();
        AllFields = BuildAll();
    }

    /// <summary>Every field encoding listed in SDM Appendix B (64-bit fields appear twice: full and high), in encoding order.</summary>
    public static ReadOnlySpan<VmcsField> All => AllFields;

    /// <summary>The width encoded in bits 14:13.</summary>
    public static VmcsFieldWidth Width(this VmcsField field) => (VmcsFieldWidth)(((uint)field >> 13) & 3);

    /// <summary>The type encoded in bits 11:10.</summary>
    public static VmcsFieldType Type(this VmcsField field) => (VmcsFieldType)(((uint)field >> 10) & 3);

    /// <summary>The index encoded in bits 9:1.</summary>
    public static int Index(this VmcsField field) => (int)(((uint)field >> 1) & 0x1FF);

    /// <summary>
    /// True for the "high" access (bit 0 set) of a 64-bit field: VMREAD/VMWRITE reach the upper 32 bits of the field.
    /// Bit 0 must be 0 for fields of any other width.
    /// </summary>
    public static bool IsHighAccess(this VmcsField field) => ((uint)field & 1) != 0;

    /// <summary>The number of bits VMWRITE stores for this encoding (natural width counts as 64; a high access stores 32).</summary>
    public static int SizeInBits(this VmcsField field) => field.IsHighAccess() ? 32 : field.Width() switch
    {
        VmcsFieldWidth.Word => 16,
        VmcsFieldWidth.Doubleword => 32,
        _ => 64,
    };

    /// <summary>True when the field is read-only (the VM-exit information type); VMWRITE to it fails unless IA32_VMX_MISC bit 29 is set.</summary>
    public static bool IsReadOnly(this VmcsField field) => field.Type() == VmcsFieldType.VmExitInformation;

    /// <summary>True when the encoding is one of the fields listed in SDM Appendix B.</summary>
    public static bool IsDefined(this VmcsField field) => Names.ContainsKey(field);

    /// <summary>
    /// True when the encoding is well formed per §25.11.2: bits 31:15 and 12 are zero, and bit 0 is set only for 64-bit fields.
    /// A well-formed encoding is not necessarily a field the processor supports (see <see cref="IsDefined"/>).
    /// </summary>
    public static bool IsWellFormed(uint encoding) =>
        (encoding & 0xFFFF_9000u) == 0 && ((encoding & 1) == 0 || ((encoding >> 13) & 3) == (uint)VmcsFieldWidth.Quadword);

    /// <summary>The full-field encoding of a high access (clears bit 0); other fields are returned unchanged.</summary>
    public static VmcsField FullField(this VmcsField field) => (VmcsField)((uint)field & ~1u);

    /// <summary>The SDM name of the field (e.g. "Guest CS selector"), or null for an encoding not in Appendix B.</summary>
    public static string? SdmName(this VmcsField field) => Names.TryGetValue(field, out var n) ? n : null;

    private static FrozenDictionary<VmcsField, string> BuildNames()
    {
        var d = new Dictionary<VmcsField, string>(Catalog.Length);
        foreach (var (f, n) in Catalog)
            d.Add(f, n);
        return d.ToFrozenDictionary();
    }

    private static VmcsField[] BuildAll()
    {
        var a = new VmcsField[Catalog.Length];
        for (int i = 0; i < a.Length; i++)
            a[i] = Catalog[i].Field;
        return a;
    }
}
