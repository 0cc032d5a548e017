using VmmKit.Ept;

namespace VmmKit.GrantTable;

// The maptrack walk of grant_table.c's gnttab_release_mappings, for a grantee that dies (DestroyDomain) or stays alive:
// what Linux's gntdev does for the mappings of a file when its last user closes it (gntdev_release -> unmap_grant_pages).
public sealed unsafe partial class GrantTableHost
{
    /// <summary>
    /// Maptrack handles walked per hold of the exclusive lock when a domain's mappings are released (Xen's
    /// gnttab_release_mappings checks for preemption as it walks): four maptrack frames, at most some 1,024 unmaps (a
    /// millisecond or two) between two chances for other operations to run.
    /// </summary>
    internal const int ReleaseChunk = 4 * GrantTableLimits.MaptrackPerFrame;

    /// <summary>
    /// Unmaps every grant mapping <paramref name="grantee"/> holds (each maptrack entry in use): the granted frame leaves
    /// the grantee's EPT, the pin and the <c>GTF_reading</c>/<c>GTF_writing</c> flags its mapping set in the granter's
    /// table are dropped, and the frame reference goes, exactly as one <c>GNTTABOP_unmap_grant_ref</c> per handle would.
    /// The domain itself stays alive and may map again (its handles are free). A hypervisor calls it when the process
    /// that owned a domain's mappings goes away (a control domain's user space reattached over a channel), as
    /// <see cref="DestroyDomain"/> does at domain death. The maptrack is walked 1,024 handles per hold of the
    /// host's lock, so other domains' grant operations run in between (and so may this domain's: a mapping it makes at
    /// a handle the walk has passed stays).
    /// </summary>
    /// <param name="grantee">The domain whose mappings go.</param>
    /// <returns>The number of mappings released (0 for a destroyed domain).</returns>
    public int ReleaseMappings(GrantDomain grantee)
    {
        CheckCaller(grantee);
        return ReleaseMaptrack(grantee);
    }

    // gnttab_release_mappings: the in-use handles are unmapped ReleaseChunk at a time, each chunk in a hold of its own
    // (Xen's -ERESTART every so many handles): out of the EPT, then, after one flush, completed in the granter's table.
    // Stops when the domain is destroyed meanwhile (its DestroyDomain released what was left).
    private int ReleaseMaptrack(GrantDomain ld)
    {
        int released = 0;
        for (int from = 0; ; from += ReleaseChunk)
        {
            using (Exclusive())
            {
                if (ld.IsDestroyed || from >= ld.MaptrackLimit)
                {
                    return released;
                }

                released += ReleaseMaptrackChunk(ld, from, Math.Min(from + ReleaseChunk, ld.MaptrackLimit));
            }
        }
    }

    // Handles [from, to) of ld's maptrack, under the exclusive lock.
    private int ReleaseMaptrackChunk(GrantDomain ld, int from, int to)
    {
        int released = 0;
        for (int h = from; h < to; h++)
        {
            if ((ld.Maptrack[h].Flags & GrantMapFlags.HostMap) != 0)
            {
                RemoveHostMapping(ld, ld.Maptrack[h].Gfn);
                released++;
            }
        }

        if (released == 0)
        {
            return 0;
        }

        FlushBeforeRelease(ld);
        for (int h = from; h < to; h++)
        {
            ref MaptrackEntry map = ref ld.Maptrack[h];
            if ((map.Flags & GrantMapFlags.HostMap) == 0)
            {
                continue;
            }

            GrantMapFlags flags = map.Flags;
            GrantDomain rd = map.Granter!;
            map.Flags = GrantMapFlags.None;
            map.Granter = null;
            PutMaptrackHandle(ld, (uint)h);

            // A live grantee's release unmaps as unmap_grant_ref would, marking a writable mapping's frame dirty; at
            // domain death gnttab_release_mappings marks nothing.
            if (!ld.IsDying)
            {
                MarkUnmapped(rd, map.Ref, flags);
            }

            CompleteUnmap(rd, map.Ref, flags, new MachineFrameNumber(map.Mfn));
        }

        return released;
    }
}
