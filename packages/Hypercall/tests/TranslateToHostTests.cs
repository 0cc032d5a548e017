using VmmKit.Ept;

namespace VmmKit.Hypercall.Tests;

/// <summary>
/// <see cref="HypercallCall{TCaller}"/>'s small copies through <see cref="IGuestVirtualMemory.TranslateToHost"/>: the same
/// bytes and the same -EFAULT as <see cref="IGuestVirtualMemory.TryRead"/>/<see cref="IGuestVirtualMemory.TryWrite"/>,
/// which still decide everything the translation does not cover.
/// </summary>
public sealed unsafe class TranslateToHostTests : IDisposable
{
    private const ulong ReadOnlyPage = 0x3000; // the EPT maps guest page 3 read-only

    private readonly MachineMemory _machine = new(1 << 20);
    private readonly EptTables _ept;
    private readonly GuestPhysicalMemory _m;

    public TranslateToHostTests()
    {
        var owner = new FrameOwner(1);
        _ept = new EptTables(_machine, owner);
        _ept.Map(new GuestPhysicalAddress(0), _machine.AllocateContiguous(owner, 3), 3, EptAccess.Read | EptAccess.Write);
        _ept.Map(new GuestPhysicalAddress(ReadOnlyPage), _machine.AllocateContiguous(owner, 1), 1, EptAccess.Read);
        _m = new GuestPhysicalMemory(_machine, _ept.Pointer);
    }

    public void Dispose()
    {
        _ept.Dispose();
        _machine.Dispose();
    }

    private struct Pair
    {
        public ulong A;
        public ulong B;
    }

    // Reads a Pair at argument 1, swaps its halves and writes it back; then reads argument 2 bytes at argument 1 + 16
    // into a buffer and writes them back.
    private static long Swap(ref HypercallCall<TestVcpu> call)
    {
        ulong gva = call.Argument(1);
        if (!call.TryCopyFromGuest(gva, out Pair p))
            return XenErrno.EFAULT.Negated();
        (p.A, p.B) = (p.B, p.A);
        if (!call.TryCopyToGuest(gva, in p))
            return XenErrno.EFAULT.Negated();
        Span<byte> bytes = stackalloc byte[(int)call.Argument(2)];
        if (!call.TryCopyFromGuest(gva + 16, bytes))
            return XenErrno.EFAULT.Negated();
        bytes.Reverse();
        return call.TryCopyToGuest(gva + 16, bytes) ? 0 : XenErrno.EFAULT.Negated();
    }

    private static long Dispatch(IGuestVirtualMemory memory, ulong gva, int length)
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.RegisterSubOp(HypercallNumber.XenVersion, 0, &Swap);
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.XenVersion, Rdi = 0, Rsi = gva, Rdx = (ulong)length };
        d.Dispatch(new TestVcpu(1), ref regs, GuestX86Mode.Long64, 0, memory);
        return (long)regs.Rax;
    }

    [Theory]
    [InlineData(0x0100UL, 16, 0, 0)]    // all within page 0: nothing goes through TryRead/TryWrite
    [InlineData(0x0100UL, 256, 0, 0)]
    [InlineData(0x0100UL, 257, 1, 1)]   // longer than a small copy
    [InlineData(0x0FF8UL, 16, 1, 1)]    // the pair crosses into page 1; the bytes lie within it
    [InlineData(0x0FE0UL, 32, 1, 1)]    // the pair fits, the bytes cross
    public void Small_copies_within_a_page_skip_the_copy_loop_and_move_the_same_bytes(ulong gva, int length, int reads, int writes)
    {
        var memory = new Recording(new PagingDisabledGuestMemory(_m));
        byte[] before = Fill(gva, 16 + length);
        Assert.Equal(0, Dispatch(memory, gva, length));
        byte[] after = Read(gva, 16 + length);
        Assert.Equal(before.AsSpan(8, 8).ToArray(), after.AsSpan(0, 8).ToArray());
        Assert.Equal(before.AsSpan(0, 8).ToArray(), after.AsSpan(8, 8).ToArray());
        Assert.Equal(before.AsSpan(16).ToArray().Reverse(), after.AsSpan(16).ToArray());
        Assert.Equal((reads, writes), (memory.Reads, memory.Writes));
    }

    [Theory]
    [InlineData(ReadOnlyPage + 0x10)]        // read-only in the EPT: the read works, the write is -EFAULT
    [InlineData(ReadOnlyPage - 8)]           // the pair crosses into the read-only page
    [InlineData(ReadOnlyPage + 0x1000)]      // not mapped
    [InlineData(ReadOnlyPage + 0x0FF8)]      // read-only, crossing into an unmapped page
    public void What_the_guest_may_not_write_is_efault_either_way(ulong gva)
    {
        byte[] before = Read(ReadOnlyPage, 0x1000);
        Assert.Equal(-14, Dispatch(new Recording(new PagingDisabledGuestMemory(_m)), gva, 8));
        Assert.Equal(before, Read(ReadOnlyPage, 0x1000));
    }

    [Fact]
    public void An_implementation_without_a_translation_is_used_through_its_copies()
    {
        var flat = new FlatGuestMemory(0x1000, 0x1000);
        new Random(5).NextBytes(flat.Bytes);
        byte[] before = flat.At(0x1100, 24).ToArray();
        Assert.Equal(0, Dispatch(flat, 0x1100, 8));
        Assert.Equal(before.AsSpan(0, 8).ToArray(), flat.At(0x1108, 8).ToArray());
        Assert.Equal((2, 2), (flat.Reads, flat.Writes));
        Assert.True(((IGuestVirtualMemory)flat).TranslateToHost(0x1100, 8, write: false) == null);
    }

    private byte[] Fill(ulong gpa, int length)
    {
        var bytes = new byte[length];
        new Random((int)gpa + length).NextBytes(bytes);
        Assert.True(_m.TryWrite(new GuestPhysicalAddress(gpa), bytes, out _));
        return bytes;
    }

    private byte[] Read(ulong gpa, int length)
    {
        var bytes = new byte[length];
        Assert.True(_m.TryRead(new GuestPhysicalAddress(gpa), bytes, out _));
        return bytes;
    }

    // Counts the copies that went through TryRead/TryWrite.
    private sealed class Recording(IGuestVirtualMemory inner) : IGuestVirtualMemory
    {
        public int Reads;
        public int Writes;

        public bool TryRead(ulong gva, Span<byte> destination)
        {
            Reads++;
            return inner.TryRead(gva, destination);
        }

        public bool TryWrite(ulong gva, ReadOnlySpan<byte> source)
        {
            Writes++;
            return inner.TryWrite(gva, source);
        }

        public byte* TranslateToHost(ulong gva, int length, bool write) => inner.TranslateToHost(gva, length, write);
    }
}
