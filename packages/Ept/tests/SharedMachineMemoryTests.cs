namespace VmmKit.Ept.Tests;

/// <summary>Machine memory backed by a memory file: another mapping of the file sees the same frames.</summary>
public sealed class SharedMachineMemoryTests
{
    private static readonly FrameOwner Dom1 = new(1);

    [Fact]
    public void Anonymous_memory_has_no_file()
    {
        using var memory = new MachineMemory(1 << 20);
        Assert.Equal(-1, memory.FileDescriptor);
    }

    [Fact]
    public void A_frame_written_through_the_machine_is_read_through_the_file_and_back()
    {
        using var memory = new MachineMemory(1 << 20, MachineMemoryBacking.SharedFile);
        Assert.True(memory.FileDescriptor >= 0);
        var frame = memory.AllocateFrame(Dom1);
        memory.GetFrame(frame)[123] = 0x5A;

        // Another open file description of the same memory file, as a process given the descriptor would have.
        using var file = new FileStream($"/proc/self/fd/{memory.FileDescriptor}", FileMode.Open, FileAccess.ReadWrite);
        Assert.Equal((long)memory.SizeInBytes, file.Length);
        file.Position = (long)frame.Address + 123;
        Assert.Equal(0x5A, file.ReadByte());
        file.Position = (long)frame.Address + 124;
        file.WriteByte(0xA5);
        file.Flush();
        Assert.Equal(0xA5, memory.GetFrame(frame)[124]);
    }

    [Fact]
    public void Freed_runs_read_as_zero_in_the_file_too()
    {
        using var memory = new MachineMemory(4 << 20, MachineMemoryBacking.SharedFile);
        var first = memory.AllocateContiguous(Dom1, 64);   // above the discard threshold: punched out with MADV_REMOVE
        for (ulong i = 0; i < 64; i++)
            memory.GetFrame(new MachineFrameNumber(first.Value + i)).Fill(0xCC);
        memory.FreeContiguous(first, 64);
        using var file = new FileStream($"/proc/self/fd/{memory.FileDescriptor}", FileMode.Open, FileAccess.Read);
        var bytes = new byte[64 * Page.PageSize];
        file.Position = (long)first.Address;
        file.ReadExactly(bytes);
        Assert.All(bytes, b => Assert.Equal(0, b));
        Assert.Equal(0, memory.GetFrame(first)[0]);
    }

    [Fact]
    public void Dispose_closes_the_file()
    {
        var memory = new MachineMemory(1 << 20, MachineMemoryBacking.SharedFile);
        int fd = memory.FileDescriptor;
        memory.Dispose();
        Assert.Equal(-1, memory.FileDescriptor);
        Assert.False(File.Exists($"/proc/self/fd/{fd}") && new FileInfo($"/proc/self/fd/{fd}").LinkTarget?.Contains("vmmkit-machine-memory") == true);
    }
}
