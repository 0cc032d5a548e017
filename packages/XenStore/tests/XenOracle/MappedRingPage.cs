using System.IO.MemoryMappedFiles;
using VmmKit.XenStore.Transports;

namespace VmmKit.XenStore.Tests.XenOracle;

/// <summary>
/// A ring page over a 4 KiB file mapped MAP_SHARED: the fake-Xen shim maps the same file into xenstored
/// (xengnttab_map_grant_ref), so the test plays the guest on xenstored's real page.
/// </summary>
internal sealed unsafe class MappedRingPage : IXenStoreRingPage, IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _pointer;

    public MappedRingPage(string path)
    {
        using (var f = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite))
            f.SetLength(4096);
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 4096, MemoryMappedFileAccess.ReadWrite);
        _view = _file.CreateViewAccessor(0, 4096);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _pointer = p + _view.PointerOffset;
    }

    public Span<byte> Span => new(_pointer, 4096);

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
