using VmmKit.Ept;

namespace VmmKit.GrantTable;

// The maptrack walk of grant_table.c's gnttab_release_mappings, for a grantee that stays alive: what Linux's gntdev does
// for the mappings of a file when its last user closes it (gntdev_release -> unmap_grant_pages).
public sealed unsafe partial class GrantTableHost
{
    /// <summary>
    /// Unmaps every grant mapping <paramref name="grantee"/> holds (each maptrack entry in use): the granted frame leaves
    /// the grantee's EPT, the pin and the <c>GTF_reading</c>/<c>GTF_writing</c> flags its mapping set in the granter's
    /// table are dropped, and the frame reference goes, exactly as one <c>GNTTABOP_unmap_grant_ref</c> per handle would.
    /// The domain itself stays alive and may map again (its handles are free). A hypervisor calls it when the process
    /// that owned a domain's mappings goes away (a control domain's user space reattached over a channel), as
    /// <see cref="DestroyDomain"/> does at domain death.
    /// </summary>
    /// <param name="grantee">The domain whose mappings go.</param>
    /// <returns>The number of mappings released (0 for a destroyed domain).</returns>
    public int ReleaseMappings(GrantDomain grantee)
    {
        CheckCaller(grantee);
        using (Exclusive())
        {
            return grantee.IsDestroyed ? 0 : ReleaseMaptrack(grantee);
        }
    }

    // gnttab_release_mappings: every in-use handle is unmapped from the EPT, then, after one flush, completed in its
    // granter's table.
    private int ReleaseMaptrack(GrantDomain ld)
    {
        int released = 0;
        for (int h = 0; h < ld.MaptrackLimit; h++)
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
        for (int h = 0; h < ld.MaptrackLimit; h++)
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
            CompleteUnmap(rd, map.Ref, flags, new MachineFrameNumber(map.Mfn));
        }

        return released;
    }
}
