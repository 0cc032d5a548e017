using VmmKit.Backends.Block;
using VmmKit.Ept;

namespace VmmKit.ReferenceHypervisor.Pv;

/// <summary>
/// Pages of the in-process Dom0's own memory for blkback's grant copies: machine frames charged to domid 0, contiguous
/// when the allocator can give them so (then a request's segments reach the image in one call), mapped in Dom0's EPT.
/// </summary>
internal sealed class Dom0CopyBuffer : IBackendBuffer
{
    private readonly MachineMemory _memory;
    private readonly MachineFrameNumber[] _frames;
    private readonly ulong _firstGfn;

    public Dom0CopyBuffer(MachineMemory memory, EptTables dom0Ept, ulong firstGfn, int pages)
    {
        _memory = memory;
        _firstGfn = firstGfn;
        _frames = new MachineFrameNumber[pages];
        var owner = new FrameOwner(Machine.BackendDomainId);
        MachineFrameNumber first;
        try
        {
            first = memory.AllocateContiguous(owner, (ulong)pages);
            for (int i = 0; i < pages; i++)
                _frames[i] = new MachineFrameNumber(first.Value + (ulong)i);
        }
        catch (MachineMemoryExhaustedException)
        {
            for (int i = 0; i < pages; i++)
                _frames[i] = memory.AllocateFrame(owner);
        }

        for (int i = 0; i < pages; i++)
            dom0Ept.Map(new GuestFrameNumber(firstGfn + (ulong)i).Address, _frames[i], 1, EptAccess.ReadWriteExecute);
    }

    /// <inheritdoc/>
    public int PageCount => _frames.Length;

    /// <inheritdoc/>
    public ulong Frame(int index) => _firstGfn + (ulong)index;

    /// <inheritdoc/>
    public Span<byte> Page(int index) => _memory.GetFrame(_frames[index]);

    /// <summary>Returns the frames.</summary>
    public void Free()
    {
        foreach (var f in _frames)
            _memory.FreeContiguous(f, 1);
    }
}
