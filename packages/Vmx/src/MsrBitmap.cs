namespace VmmKit.Vmx;

/// <summary>
/// The 4-KiB MSR bitmap of the "use MSR bitmaps" control (SDM Vol. 3C §25.6.9): read bitmap for MSRs 0-1FFFh at
/// offset 0, for C0000000h-C0001FFFh at 1024, write bitmaps at 2048 and 3072. A set bit makes the access exit.
/// </summary>
public static class MsrBitmap
{
    /// <summary>Size of the bitmap in bytes.</summary>
    public const int Size = 4096;

    /// <summary>
    /// MSRs that are guest state a processor keeps itself (SDM Vol. 4 table 2-2): SYSENTER_CS/ESP/EIP, PAT, EFER, STAR,
    /// LSTAR, CSTAR, FMASK, FS_BASE, GS_BASE, KERNEL_GS_BASE, TSC_AUX. Passing them through lets a kernel's SYSCALL,
    /// SWAPGS and RDTSCP setup run without exits (EFER and PAT reach the VMCS through the save-on-exit controls).
    /// </summary>
    public static ReadOnlySpan<uint> ProcessorStateMsrs =>
    [
        0x174, 0x175, 0x176, 0x277, 0xC000_0080, 0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084,
        0xC000_0100, 0xC000_0101, 0xC000_0102, 0xC000_0103,
    ];

    /// <summary>Sets every bit: every RDMSR and WRMSR exits.</summary>
    public static void ExitOnAll(Span<byte> bitmap)
    {
        if (bitmap.Length < Size) throw new ArgumentException($"an MSR bitmap is {Size} bytes", nameof(bitmap));
        bitmap[..Size].Fill(0xFF);
    }

    /// <summary>Clears the read and/or write bit of <paramref name="msr"/> (false when the MSR is outside the two ranges: it always exits).</summary>
    public static bool PassThrough(Span<byte> bitmap, uint msr, bool read = true, bool write = true)
    {
        if (bitmap.Length < Size) throw new ArgumentException($"an MSR bitmap is {Size} bytes", nameof(bitmap));
        int offset;
        if (msr <= 0x1FFF) offset = 0;
        else if (msr >= 0xC000_0000 && msr <= 0xC000_1FFF) offset = 1024;
        else return false;
        int bit = (int)(msr & 0x1FFF);
        byte mask = (byte)~(1 << (bit & 7));
        if (read) bitmap[offset + (bit >> 3)] &= mask;
        if (write) bitmap[offset + 2048 + (bit >> 3)] &= mask;
        return true;
    }

    /// <summary>A bitmap where only <see cref="ProcessorStateMsrs"/> pass through; copy it to a page and name it in <see cref="VmcsField.MsrBitmapsAddress"/>.</summary>
    public static byte[] ProcessorStatePassThrough()
    {
        var b = new byte[Size];
        ExitOnAll(b);
        foreach (uint msr in ProcessorStateMsrs) PassThrough(b, msr);
        return b;
    }
}
