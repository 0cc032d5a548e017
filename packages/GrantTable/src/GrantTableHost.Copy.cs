using System.Runtime.CompilerServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable;

// GNTTABOP_copy (grant_table.c: gnttab_copy_one, acquire_grant_for_copy, release_grant_for_copy).
public sealed unsafe partial class GrantTableHost
{
    /// <summary>
    /// One operation of <c>GNTTABOP_copy</c>: copies <c>op.Len</c> bytes between a grant reference or a frame of the
    /// caller on either side, each side within its page (and within a v2 sub-page grant); sets <c>op.Status</c>.
    /// A frame number (no gref flag) is only accepted for <c>DOMID_SELF</c>. Allocates nothing.
    /// </summary>
    /// <param name="caller">The domain issuing the copy.</param>
    /// <param name="op">The operation, as read from the guest.</param>
    public void Copy(GrantDomain caller, ref GnttabCopy op)
    {
        CheckCaller(caller);
        lock (_lock)
        {
            op.Status = (short)CopyOne(caller, in op);
        }
    }

    /// <summary>Runs a batch of copy operations under one acquisition of the lock, setting each status.</summary>
    /// <param name="caller">The domain issuing the copies.</param>
    /// <param name="ops">The operations.</param>
    public void Copy(GrantDomain caller, Span<GnttabCopy> ops)
    {
        CheckCaller(caller);
        lock (_lock)
        {
            for (int i = 0; i < ops.Length; i++)
            {
                ops[i].Status = (short)CopyOne(caller, in ops[i]);
            }
        }
    }

    private struct CopyBuffer
    {
        public GrantDomain? Domain;
        public uint Ref;
        public bool HaveGrant;
        public ulong Mfn;
        public ushort Start;
        public ushort Length;
    }

    private GrantStatus CopyOne(GrantDomain caller, in GnttabCopy op)
    {
        if (caller.IsDestroyed)
        {
            return GrantStatus.BadDomain;
        }

        var flags = (GrantCopyFlags)op.Flags;
        bool srcGref = (flags & GrantCopyFlags.SourceGref) != 0;
        bool dstGref = (flags & GrantCopyFlags.DestGref) != 0;

        // gnttab_copy_lock_domain: only DOMID_SELF may be addressed by frame number.
        CopyBuffer src = default, dst = default;
        GrantStatus rc = LockCopyDomain(caller, op.Source.DomId, srcGref, ref src);
        if (rc == GrantStatus.Okay)
        {
            rc = LockCopyDomain(caller, op.Dest.DomId, dstGref, ref dst);
        }

        if (rc != GrantStatus.Okay)
        {
            return rc;
        }

        rc = ClaimBuffer(caller, in op.Source, srcGref, readOnly: true, ref src);
        if (rc == GrantStatus.Okay)
        {
            rc = ClaimBuffer(caller, in op.Dest, dstGref, readOnly: false, ref dst);
            if (rc == GrantStatus.Okay)
            {
                rc = CopyBytes(in op, in src, in dst);
                ReleaseBuffer(ref dst, readOnly: false);
            }

            ReleaseBuffer(ref src, readOnly: true);
        }

        return rc;
    }

    private GrantStatus LockCopyDomain(GrantDomain caller, ushort domid, bool isGref, ref CopyBuffer buf)
    {
        if (domid != DomainId.Self && !isGref)
        {
            return GrantStatus.PermissionDenied;
        }

        buf.Domain = LookupByAnyId(caller, domid);
        return buf.Domain is null ? GrantStatus.BadDomain : GrantStatus.Okay;
    }

    private GrantStatus ClaimBuffer(GrantDomain caller, in GnttabCopyPtr ptr, bool isGref, bool readOnly, ref CopyBuffer buf)
    {
        if (isGref)
        {
            GrantStatus rc = AcquireGrantForCopy(buf.Domain!, ptr.Ref, caller.Id, readOnly, ref buf);
            if (rc == GrantStatus.Okay)
            {
                buf.Ref = ptr.Ref;
                buf.HaveGrant = true;
            }

            return rc;
        }

        buf.Start = 0;
        buf.Length = Page.PageSize;
        return GetPagedFrame(buf.Domain!, ptr.Gmfn, readOnly, out buf.Mfn);
    }

    private GrantStatus CopyBytes(in GnttabCopy op, in CopyBuffer src, in CopyBuffer dst)
    {
        int len = op.Len;
        if (op.Source.Offset + len > Page.PageSize || op.Dest.Offset + len > Page.PageSize)
        {
            return GrantStatus.BadCopyArg; // "copy beyond page area"
        }

        if (op.Source.Offset < src.Start || op.Source.Offset + len > src.Start + src.Length ||
            op.Dest.Offset < dst.Start || op.Dest.Offset + len > dst.Start + dst.Length)
        {
            return GrantStatus.GeneralError; // outside a sub-page grant
        }

        byte* from = _memory.GetFramePointer(new MachineFrameNumber(src.Mfn)) + op.Source.Offset;
        byte* to = _memory.GetFramePointer(new MachineFrameNumber(dst.Mfn)) + op.Dest.Offset;
        Buffer.MemoryCopy(from, to, len, len); // memmove semantics: source and destination may be the same frame
        return GrantStatus.Okay;
    }

    private GrantStatus AcquireGrantForCopy(GrantDomain rd, uint gref, ushort ldom, bool readOnly, ref CopyBuffer buf)
    {
        if (gref >= (uint)rd.EntryCount)
        {
            return GrantStatus.BadGntref;
        }

        ref ActiveGrantEntry act = ref rd.Active[gref];
        if (act.Pin != 0 && (act.DomId != ldom || (act.Pin & ActiveGrantEntry.OverflowRisk) != 0))
        {
            return GrantStatus.GeneralError;
        }

        uint oldPin = act.Pin;
        if (oldPin == 0 || (!readOnly && (oldPin & (ActiveGrantEntry.HostWriteMask | ActiveGrantEntry.DeviceWriteMask)) == 0))
        {
            GrantStatus rc = SetStatus(rd, gref, act, readOnly, mapping: false, ldom);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }

            ulong gfn;
            ushort start = 0, length = Page.PageSize;
            bool subPage = false;
            if (rd.Version == 1)
            {
                gfn = EntryV1(rd, gref)->Frame;
            }
            else
            {
                GrantEntryV2* e = EntryV2(rd, gref);
                gfn = Volatile.Read(ref e->Frame);
                if ((Volatile.Read(ref e->Flags) & (ushort)GrantEntryFlags.SubPage) != 0)
                {
                    subPage = true;
                    start = Volatile.Read(ref e->SubPageOffset);
                    length = Volatile.Read(ref e->SubPageLength);
                }
            }

            rc = GetPagedFrame(rd, gfn, readOnly, out ulong mfn);
            if (rc != GrantStatus.Okay)
            {
                ClearAfterFailedPin(rd, gref, act.Pin, readOnly);
                return rc;
            }

            if (act.Pin == 0)
            {
                act.DomId = ldom;
                act.IsSubPage = subPage;
                act.Start = start;
                act.Length = length;
                act.Mfn = mfn;
            }
        }
        else if (rd.IsDestroyed || !_memory.TryGetOwner(new MachineFrameNumber(act.Mfn), out FrameOwner owner) || owner.DomainId != rd.Id)
        {
            return GrantStatus.BadDomain; // the pinned frame no longer belongs to the granter
        }

        act.Pin += readOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement;
        buf.Start = act.Start;
        buf.Length = act.Length;
        buf.Mfn = act.Mfn;
        return GrantStatus.Okay;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ReleaseBuffer(ref CopyBuffer buf, bool readOnly)
    {
        if (!buf.HaveGrant)
        {
            return;
        }

        buf.HaveGrant = false;
        GrantDomain rd = buf.Domain!;
        ref ActiveGrantEntry act = ref rd.Active[buf.Ref];
        act.Pin -= readOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement;
        ClearAfterFailedPin(rd, buf.Ref, act.Pin, readOnly);
    }
}
