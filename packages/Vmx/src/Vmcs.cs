namespace VmmKit.Vmx;

/// <summary>
/// Storage for one virtual-machine control structure: every field reachable by VMREAD/VMWRITE, plus the
/// revision identifier and launch state (SDM Vol. 3C §25.1–25.2, §25.11). Writes are truncated to the
/// field's width; the high access of a 64-bit field aliases its upper 32 bits. Storage is a flat array
/// indexed by the encoding's width, type and index bits, so reads and writes allocate nothing.
/// </summary>
public sealed partial class Vmcs
{
    // Slot = width (2 bits) : type (2 bits) : index (6 bits). Appendix B indices stay below 64.
    private const int IndexBits = 6;
    private readonly ulong[] _slots = new ulong[16 << IndexBits];

    /// <summary>The VMCS revision identifier (bits 30:0 of the first 4 bytes of the VMCS region; SDM §25.2).</summary>
    public uint RevisionIdentifier { get; set; }

    /// <summary>The VMX-abort indicator (bytes 4–7 of the VMCS region; SDM §25.2).</summary>
    public uint AbortIndicator { get; set; }

    /// <summary>The launch state: <see cref="VmcsLaunchState.Clear"/> after VMCLEAR, <see cref="VmcsLaunchState.Launched"/> after a successful VMLAUNCH (SDM §25.1).</summary>
    public VmcsLaunchState LaunchState { get; set; } = VmcsLaunchState.Clear;

    /// <summary>Changes whenever a control field or a host-state field takes a new value (or the whole VMCS is replaced).</summary>
    internal ulong ControlAndHostVersion { get; private set; }

    /// <summary>
    /// The <see cref="VmEntryChecks"/> that found every control and host-state check passing (event injection aside) at
    /// <see cref="CheckedVersion"/> in <see cref="CheckedEnvironment"/>; null when none did.
    /// </summary>
    internal VmEntryChecks? CheckedBy { get; set; }

    /// <summary>The <see cref="ControlAndHostVersion"/> <see cref="CheckedBy"/> found valid.</summary>
    internal ulong CheckedVersion { get; set; }

    /// <summary>The environment <see cref="CheckedBy"/> checked in.</summary>
    internal VmEntryEnvironment CheckedEnvironment { get; set; }

    /// <summary>Reads a field as VMREAD would (zero-extended to 64 bits).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The encoding is not a well-formed field encoding.</exception>
    public ulong Read(VmcsField field)
    {
        if (!TryRead(field, out ulong value))
            throw new ArgumentOutOfRangeException(nameof(field), $"0x{(uint)field:X} is not a VMCS field encoding.");
        return value;
    }

    /// <summary>Writes a field as VMWRITE would, truncating to the field width.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The encoding is not a well-formed field encoding.</exception>
    public void Write(VmcsField field, ulong value)
    {
        if (!TryWrite(field, value))
            throw new ArgumentOutOfRangeException(nameof(field), $"0x{(uint)field:X} is not a VMCS field encoding.");
    }

    /// <summary>Reads a field; false (and 0) when the encoding is malformed or outside the stored index range.</summary>
    public bool TryRead(VmcsField field, out ulong value)
    {
        int slot = Slot(field);
        if (slot < 0)
        {
            value = 0;
            return false;
        }
        ulong v = _slots[slot];
        value = field.IsHighAccess() ? v >> 32 : v;
        return true;
    }

    /// <summary>Writes a field; false when the encoding is malformed or outside the stored index range.</summary>
    public bool TryWrite(VmcsField field, ulong value)
    {
        int slot = Slot(field);
        if (slot < 0)
            return false;
        ref ulong s = ref _slots[slot];
        ulong old = s;
        if (field.IsHighAccess())
        {
            s = (s & 0xFFFF_FFFFul) | (value << 32);
        }
        else
        {
            s = field.Width() switch
            {
                VmcsFieldWidth.Word => value & 0xFFFF,
                VmcsFieldWidth.Doubleword => value & 0xFFFF_FFFF,
                _ => value,
            };
        }
        if (s != old && field.Type() is VmcsFieldType.Control or VmcsFieldType.HostState)
            ControlAndHostVersion++;
        return true;
    }

    /// <summary>Sets every field to zero and the launch state to clear (the revision identifier is kept).</summary>
    public void Clear()
    {
        Array.Clear(_slots);
        ControlAndHostVersion++;
        AbortIndicator = 0;
        LaunchState = VmcsLaunchState.Clear;
    }

    /// <summary>Copies every field, the revision identifier, abort indicator and launch state into <paramref name="destination"/>.</summary>
    public void CopyTo(Vmcs destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        _slots.AsSpan().CopyTo(destination._slots);
        destination.ControlAndHostVersion++;
        destination.RevisionIdentifier = RevisionIdentifier;
        destination.AbortIndicator = AbortIndicator;
        destination.LaunchState = LaunchState;
    }

    /// <summary>Returns a deep copy.</summary>
    public Vmcs Clone()
    {
        var c = new Vmcs();
        CopyTo(c);
        return c;
    }

    private static int Slot(VmcsField field)
    {
        uint e = (uint)field;
        if (!VmcsFieldInfo.IsWellFormed(e))
            return -1;
        int index = field.Index();
        if (index >= 1 << IndexBits)
            return -1;
        return ((int)field.Width() << 2 | (int)field.Type()) << IndexBits | index;
    }
}
