using VmmKit.Ept;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// The references Dom0's foreign mappings (MMAPBATCH) hold on machine frames: a mapped frame is never freed or given to
/// another domain while Dom0 maps it, even if its domain is destroyed (Xen's <c>get_page</c> taken by privcmd's
/// <c>xen_remap_domain_gfn_array</c>). A destroyed domain's mapped frames are freed when their last reference goes.
/// </summary>
internal sealed class ForeignMappings(VmmKit.GrantTable.FrameReferences frames)
{
    private readonly MachineMemory memory = frames.Memory;
    private readonly Dictionary<ulong, int> _references = [];
    private readonly HashSet<ulong> _orphans = [];

    /// <summary>Frames currently referenced.</summary>
    public int Count => _references.Count;

    /// <summary>True while Dom0 maps <paramref name="frame"/>.</summary>
    public bool IsHeld(MachineFrameNumber frame) => _references.ContainsKey(frame.Value);

    /// <summary>References Dom0 holds on <paramref name="frame"/>.</summary>
    public int ReferencesOf(MachineFrameNumber frame) => _references.TryGetValue(frame.Value, out int n) ? n : 0;

    /// <summary>Takes a reference on <paramref name="frame"/>.</summary>
    public void Take(MachineFrameNumber frame) =>
        _references[frame.Value] = _references.TryGetValue(frame.Value, out int n) ? n + 1 : 1;

    /// <summary>Drops a reference; false when Dom0 held none on <paramref name="frame"/>.</summary>
    public bool Release(MachineFrameNumber frame)
    {
        if (!_references.TryGetValue(frame.Value, out int n))
            return false;
        if (n > 1)
        {
            _references[frame.Value] = n - 1;
            return true;
        }

        _references.Remove(frame.Value);
        if (_orphans.Remove(frame.Value))
            memory.FreeFrame(frame);
        return true;
    }

    /// <summary>Frames of a destroyed domain that Dom0 still maps: freed when released.</summary>
    public void Orphan(IEnumerable<MachineFrameNumber> frames)
    {
        foreach (var f in frames)
            _orphans.Add(f.Value);
    }

    /// <summary>Dom0 disconnected: every reference goes (its mappings went with its process).</summary>
    public void ReleaseAll()
    {
        foreach (ulong f in _references.Keys)
        {
            if (_orphans.Remove(f))
                memory.FreeFrame(new MachineFrameNumber(f));
        }

        _references.Clear();
    }
}
