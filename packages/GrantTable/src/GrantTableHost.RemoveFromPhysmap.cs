using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable;

public sealed partial class GrantTableHost
{
    /// <summary>
    /// The grant-table part of <c>XENMEM_remove_from_physmap</c> (xen/common/memory.c, <c>guest_physmap_remove_page</c>):
    /// when <paramref name="gpfn"/> of <paramref name="domain"/> holds one of its shared or status frames, the frame
    /// leaves that guest frame (it stays the table's, and <c>XENMEM_add_to_physmap</c> may place it again). The
    /// hypervisor's handler calls this first and removes a RAM page itself when the answer is -ENOENT.
    /// </summary>
    /// <param name="domain">The domain whose physmap changes.</param>
    /// <param name="gpfn">The guest frame (<c>xen_remove_from_physmap.gpfn</c>).</param>
    /// <returns>
    /// 0 when a table frame was removed; -ENOENT when no table frame is there; -EBUSY when a grant mapping is there
    /// (GNTTABOP_unmap_grant_ref removes those).
    /// </returns>
    public long RemoveTableFrame(GrantDomain domain, GuestFrameNumber gpfn)
    {
        CheckCaller(domain);
        using (Exclusive())
        {
            if (domain.GrantMappedGfns.ContainsKey(gpfn.Value))
            {
                return XenErrno.EBUSY.Negated();
            }

            if (!domain.TableGfns.TryGetValue(gpfn.Value, out (bool Status, int Index) frame))
            {
                return XenErrno.ENOENT.Negated();
            }

            UnmapTableFrame(domain, frame.Status, frame.Index);
            return 0;
        }
    }
}
