using VmmKit.Ept;
using VmmKit.GrantTable;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// The references Dom0's foreign mappings (MMAPBATCH) hold on machine frames (Xen's <c>get_page</c> taken by privcmd's
/// <c>xen_remap_domain_gfn_array</c>). Each one is also a reference in the machine's <see cref="FrameReferences"/>, the
/// counts grant mappings keep, so a frame its domain removes or leaves by dying (freed through
/// <see cref="FrameReferences.Free"/>) goes back to the pool only when the last mapping of either kind goes.
/// </summary>
internal sealed class ForeignMappings(FrameReferences frames)
{
    private readonly Dictionary<ulong, int> _references = [];

    /// <summary>Frames currently referenced.</summary>
    public int Count => _references.Count;

    /// <summary>True while Dom0 maps <paramref name="frame"/>.</summary>
    public bool IsHeld(MachineFrameNumber frame) => _references.ContainsKey(frame.Value);

    /// <summary>References Dom0 holds on <paramref name="frame"/>.</summary>
    public int ReferencesOf(MachineFrameNumber frame) => _references.TryGetValue(frame.Value, out int n) ? n : 0;

    /// <summary>
    /// Takes a reference on <paramref name="frame"/> if it is <paramref name="owner"/>'s and its free is not pending
    /// (Xen's <c>get_page(page, d)</c>: a foreign mapping names the domain's own RAM, never a page it maps by grant).
    /// </summary>
    public bool TryTake(MachineFrameNumber frame, FrameOwner owner)
    {
        if (!frames.TryAcquire(frame, owner))
            return false;
        _references[frame.Value] = _references.TryGetValue(frame.Value, out int n) ? n + 1 : 1;
        return true;
    }

    /// <summary>Drops a reference (the last reference of any kind frees a frame its owner freed); false when Dom0 held none.</summary>
    public bool Release(MachineFrameNumber frame)
    {
        if (!_references.TryGetValue(frame.Value, out int n))
            return false;
        if (n > 1)
            _references[frame.Value] = n - 1;
        else
            _references.Remove(frame.Value);
        frames.Release(frame);
        return true;
    }

    /// <summary>Dom0 disconnected: every reference goes (its mappings went with its process).</summary>
    public void ReleaseAll()
    {
        foreach (var (f, n) in _references)
        {
            for (int i = 0; i < n; i++)
                frames.Release(new MachineFrameNumber(f));
        }

        _references.Clear();
    }
}
