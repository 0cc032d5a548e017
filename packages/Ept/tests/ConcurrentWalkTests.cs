using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>
/// Walks racing with edits: a hostile guest fills its own frames with entries that point at another domain's frame, so a
/// walker that ever took a data frame (or a reused table) for a table of the wrong level would hand out that frame.
/// </summary>
public sealed unsafe class ConcurrentWalkTests
{
    [Fact]
    public void Walks_racing_with_edits_never_yield_a_frame_outside_the_domain()
    {
        using var memory = new MachineMemory(64UL << 20);
        var victim = new FrameOwner(2);
        var guest = new FrameOwner(1);
        MachineFrameNumber secret = memory.AllocateFrame(victim);
        using var ept = new EptTables(memory, guest);
        MachineFrameNumber data = memory.AllocateContiguous(guest, 1024, 512);
        ulong hostile = secret.Address | 0x87 | (6 << 3); // a present RWX entry, valid as a PTE, 2 MiB or 1 GiB page
        for (ulong f = 0; f < 1024; f++)
        {
            new Span<ulong>(memory.GetFramePointer(data + f), 512).Fill(hostile);
        }

        using var readers = new RacingReaders(2, random =>
        {
            var gpa = new GuestPhysicalAddress((ulong)random.NextInt64(4L << 30) & ~7UL);
            if (EptWalker.Translate(memory, ept.Pointer, gpa, EptAccess.Read, default, out EptTranslation t, out _) == EptTranslationStatus.Success)
            {
                ulong f = t.Frame.Value;
                if (f < data.Value || f >= data.Value + 1024)
                {
                    return $"walk of {gpa} reached {t.Frame}";
                }
            }

            return null;
        });
        var editor = new Random(99);
        for (int i = 0; i < 4000; i++)
        {
            ulong gfn = (ulong)editor.Next(0, 1 << 20) & (editor.Next(2) == 0 ? ~511UL : ~0UL);
            ulong frame = (ulong)editor.Next(0, 512) & (editor.Next(2) == 0 ? ~511UL : ~0UL);
            ulong count = editor.Next(3) switch { 0 => 512, 1 => 1024 - frame, _ => (ulong)editor.Next(1, 40) };
            count = Math.Min(count, 1024 - frame);
            switch (editor.Next(3))
            {
                case 0:
                    ept.Map(new GuestFrameNumber(gfn).Address, data + frame, count, EptAccess.ReadWriteExecute);
                    break;
                case 1:
                    ept.Unmap(new GuestFrameNumber(gfn).Address, count);
                    break;
                default:
                    ept.Protect(new GuestFrameNumber(gfn).Address, count, editor.Next(2) == 0 ? EptAccess.Read : EptAccess.None);
                    break;
            }

            GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer);
        }

        readers.Dispose();
        Assert.Null(readers.Failure);
        Assert.True(readers.Steps > 0);
        Assert.True(new Span<byte>(memory.GetFramePointer(secret), 4096).IndexOfAnyExcept((byte)0) < 0);
    }
}
