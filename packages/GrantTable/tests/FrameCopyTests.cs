using Xunit;

namespace VmmKit.GrantTable.Tests;

// GNTTABOP_copy's byte copy: every length a copy may have, between frames and within one frame (memmove semantics),
// against a copy made through a separate array; nothing outside the destination changes.
public sealed unsafe class FrameCopyTests
{
    private const int Page = 4096;

    [Fact]
    public void Every_length_between_two_frames_copies_exactly_those_bytes() =>
        AssertEveryLengthCopies(&FrameCopy.Copy, [0, 1, 31, 64, 4000], [0, 7, 32, 4095], shortest: 0);

    // Both sides in one frame (a grant or frame copied onto itself): overlapping ranges either way, and ranges that
    // just touch, copy as memmove does.
    [Theory]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(32)]
    [InlineData(33)]
    [InlineData(64)]
    [InlineData(100)]
    [InlineData(1024)]
    public void Ranges_within_one_frame_copy_as_memmove(int distance)
    {
        foreach (int length in new[] { 32, 33, 63, 64, 65, 100, 512, 1024, 2047, 2048, 3000 })
        {
            foreach (bool forward in new[] { true, false })
            {
                if (length + distance > Page)
                {
                    continue;
                }

                byte[] frame = Pattern(Page, seed: 3);
                int from = forward ? 0 : distance, to = forward ? distance : 0;
                byte[] expected = Expected(frame, from, frame, to, length);
                fixed (byte* f = frame)
                {
                    FrameCopy.Copy(f + from, f + to, (uint)length);
                }

                if (!expected.AsSpan().SequenceEqual(frame))
                {
                    Assert.Fail($"length {length}, {(forward ? "forward" : "backward")} by {distance}");
                }
            }
        }
    }

    [Fact]
    public void A_copy_onto_itself_changes_nothing()
    {
        byte[] frame = Pattern(Page, seed: 4);
        byte[] before = [.. frame];
        fixed (byte* f = frame)
        {
            FrameCopy.Copy(f + 100, f + 100, 1000);
        }

        Assert.Equal(before, frame);
    }

    // The 16-byte copier that code built without 256-bit vectors uses from 2 KiB up (a NativeAOT build's default
    // target), called directly: this host's JIT code takes the 256-bit one.
    [Fact]
    public void The_16_byte_copier_copies_every_length_from_2_KiB_exactly() =>
        AssertEveryLengthCopies(&CopyWide128, [0, 1, 15, 16, 17, 1000], [0, 3, 16, 2047], shortest: 2048);

    private static void CopyWide128(byte* source, byte* destination, uint length) =>
        FrameCopy.CopyDisjointWide128(source, destination, length);

    // Every length from shortest to what fits in a page after both offsets, from each source offset to each
    // destination offset of two separate frames, against a copy made through a separate array.
    private static void AssertEveryLengthCopies(
        delegate*<byte*, byte*, uint, void> copy, int[] sourceOffsets, int[] destinationOffsets, int shortest)
    {
        byte[] source = Pattern(2 * Page, seed: 1);
        foreach (int sourceOffset in sourceOffsets)
        {
            foreach (int destinationOffset in destinationOffsets)
            {
                int max = Page - Math.Max(sourceOffset, destinationOffset);
                for (int length = shortest; length <= max; length++)
                {
                    byte[] destination = Pattern(Page, seed: 2);
                    byte[] expected = Expected(source, sourceOffset, destination, destinationOffset, length);
                    fixed (byte* s = source)
                    fixed (byte* d = destination)
                    {
                        copy(s + sourceOffset, d + destinationOffset, (uint)length);
                    }

                    if (!expected.AsSpan().SequenceEqual(destination))
                    {
                        Assert.Fail($"length {length} from offset {sourceOffset} to offset {destinationOffset}");
                    }
                }
            }
        }
    }

    // The bytes copied through a separate array (so overlapping ranges read the bytes as they were before the copy).
    private static byte[] Expected(byte[] source, int sourceOffset, byte[] destination, int destinationOffset, int length)
    {
        byte[] bytes = source.AsSpan(sourceOffset, length).ToArray();
        byte[] expected = [.. destination];
        bytes.CopyTo(expected.AsSpan(destinationOffset));
        return expected;
    }

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
