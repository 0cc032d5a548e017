namespace VmmKit.EventChannel;

/// <summary>
/// Maps one of a domain's guest frames into the host, as Xen's <c>map_guest_page()</c> for the FIFO
/// ABI's control blocks and event array pages (xen/common/event_fifo.c). The hypervisor implements
/// it per domain, for example over <c>VmmKit.Ept.GuestPhysicalMemory.TryGetHostPage</c>.
/// </summary>
/// <remarks>
/// A successful map takes a reference on the frame (Xen's <c>get_page_and_type</c>): the host page
/// must stay valid, even if the guest later removes the frame from its physmap, until
/// <see cref="Unmap"/> is called for it. The package calls <see cref="Unmap"/> once per successful
/// map, when the domain's FIFO state is torn down (EVTCHNOP_reset or domain destruction) and no
/// other thread can still use the page.
/// </remarks>
public unsafe interface IGuestFrameMapper
{
    /// <summary>Maps guest frame <paramref name="gfn"/> writable.</summary>
    /// <param name="gfn">A guest frame number from the guest (unchecked).</param>
    /// <param name="page">The 4 KiB-aligned host address of the frame.</param>
    /// <returns>False when the frame is not ordinary writable RAM of the domain (the operation then fails with -EINVAL).</returns>
    bool TryMap(ulong gfn, out byte* page);

    /// <summary>Drops the reference taken by a successful <see cref="TryMap"/>.</summary>
    /// <param name="gfn">The frame number passed to <see cref="TryMap"/>.</param>
    /// <param name="page">The host address it returned.</param>
    void Unmap(ulong gfn, byte* page);
}
