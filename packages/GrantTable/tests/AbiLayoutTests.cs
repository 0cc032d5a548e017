using System.Runtime.CompilerServices;
using static VmmKit.TestSupport.XenAbiLayout;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Every C# struct mirroring a grant-table struct, checked against gcc and /usr/include/xen/grant_table.h:
/// sizeof and every offsetof, for x86-64 and, for the structs a 32-bit (compat) caller uses, i386.
/// </summary>
public class AbiLayoutTests
{
    private static readonly string[] Headers = ["xen/xen.h", "xen/grant_table.h", "xen/memory.h"];

    [Fact]
    public void Grant_entries()
    {
        var v1 = default(GrantEntryV1);
        var v2 = default(GrantEntryV2);
        foreach (int bits in new[] { 64, 32 })
        {
            AssertLayout(Headers, bits,
                ("struct grant_entry_v1", Unsafe.SizeOf<GrantEntryV1>(), [("flags", Offset(ref v1, ref v1.Flags)), ("domid", Offset(ref v1, ref v1.DomId)), ("frame", Offset(ref v1, ref v1.Frame))]),
                ("union grant_entry_v2", Unsafe.SizeOf<GrantEntryV2>(),
                [
                    ("hdr.flags", Offset(ref v2, ref v2.Flags)), ("hdr.domid", Offset(ref v2, ref v2.DomId)),
                    ("full_page.pad0", Offset(ref v2, ref v2.FullPagePad0)), ("full_page.frame", Offset(ref v2, ref v2.Frame)),
                    ("sub_page.page_off", Offset(ref v2, ref v2.SubPageOffset)), ("sub_page.length", Offset(ref v2, ref v2.SubPageLength)), ("sub_page.frame", Offset(ref v2, ref v2.Frame)),
                    ("transitive.trans_domid", Offset(ref v2, ref v2.TransDomId)), ("transitive.pad0", Offset(ref v2, ref v2.TransPad0)), ("transitive.gref", Offset(ref v2, ref v2.TransGref)),
                ]),
                ("grant_status_t", sizeof(ushort), []));
        }

        Assert.Equal(8, GrantEntryV1.Size);
        Assert.Equal(16, GrantEntryV2.Size);
    }

    [Fact]
    public void Map_unmap_swap_structs_have_one_layout_in_both_abis()
    {
        var m = default(GnttabMapGrantRef);
        var u = default(GnttabUnmapGrantRef);
        var r = default(GnttabUnmapAndReplace);
        var s = default(GnttabSwapGrantRef);
        foreach (int bits in new[] { 64, 32 })
        {
            AssertLayout(Headers, bits,
                ("struct gnttab_map_grant_ref", Unsafe.SizeOf<GnttabMapGrantRef>(),
                [
                    ("host_addr", Offset(ref m, ref m.HostAddr)), ("flags", Offset(ref m, ref m.Flags)), ("ref", Offset(ref m, ref m.Ref)), ("dom", Offset(ref m, ref m.Dom)),
                    ("status", Offset(ref m, ref m.Status)), ("handle", Offset(ref m, ref m.Handle)), ("dev_bus_addr", Offset(ref m, ref m.DevBusAddr)),
                ]),
                ("struct gnttab_unmap_grant_ref", Unsafe.SizeOf<GnttabUnmapGrantRef>(),
                [("host_addr", Offset(ref u, ref u.HostAddr)), ("dev_bus_addr", Offset(ref u, ref u.DevBusAddr)), ("handle", Offset(ref u, ref u.Handle)), ("status", Offset(ref u, ref u.Status))]),
                ("struct gnttab_unmap_and_replace", Unsafe.SizeOf<GnttabUnmapAndReplace>(),
                [("host_addr", Offset(ref r, ref r.HostAddr)), ("new_addr", Offset(ref r, ref r.NewAddr)), ("handle", Offset(ref r, ref r.Handle)), ("status", Offset(ref r, ref r.Status))]),
                ("struct gnttab_swap_grant_ref", Unsafe.SizeOf<GnttabSwapGrantRef>(),
                [("ref_a", Offset(ref s, ref s.RefA)), ("ref_b", Offset(ref s, ref s.RefB)), ("status", Offset(ref s, ref s.Status))]));
        }
    }

    [Fact]
    public void Table_structs()
    {
        var q = default(GnttabQuerySize);
        var sv = default(GnttabSetVersion);
        var gv = default(GnttabGetVersion);
        foreach (int bits in new[] { 64, 32 })
        {
            AssertLayout(Headers, bits,
                ("struct gnttab_query_size", Unsafe.SizeOf<GnttabQuerySize>(),
                [("dom", Offset(ref q, ref q.Dom)), ("nr_frames", Offset(ref q, ref q.NrFrames)), ("max_nr_frames", Offset(ref q, ref q.MaxNrFrames)), ("status", Offset(ref q, ref q.Status))]),
                ("struct gnttab_set_version", Unsafe.SizeOf<GnttabSetVersion>(), [("version", Offset(ref sv, ref sv.Version))]),
                ("struct gnttab_get_version", Unsafe.SizeOf<GnttabGetVersion>(), [("dom", Offset(ref gv, ref gv.Dom)), ("pad", Offset(ref gv, ref gv.Pad)), ("version", Offset(ref gv, ref gv.Version))]));
        }

        var st = default(GnttabSetupTable);
        var gs = default(GnttabGetStatusFrames);
        AssertLayout(Headers, 64,
            ("struct gnttab_setup_table", Unsafe.SizeOf<GnttabSetupTable>(),
            [("dom", Offset(ref st, ref st.Dom)), ("nr_frames", Offset(ref st, ref st.NrFrames)), ("status", Offset(ref st, ref st.Status)), ("frame_list", Offset(ref st, ref st.FrameList))]),
            ("struct gnttab_get_status_frames", Unsafe.SizeOf<GnttabGetStatusFrames>(),
            [("nr_frames", Offset(ref gs, ref gs.NrFrames)), ("dom", Offset(ref gs, ref gs.Dom)), ("status", Offset(ref gs, ref gs.Status)), ("frame_list", Offset(ref gs, ref gs.FrameList))]),
            ("xen_pfn_t", sizeof(ulong), []));
        var cst = default(CompatGnttabSetupTable);
        var cgs = default(CompatGnttabGetStatusFrames);
        AssertLayout(Headers, 32,
            ("struct gnttab_setup_table", Unsafe.SizeOf<CompatGnttabSetupTable>(),
            [("dom", Offset(ref cst, ref cst.Dom)), ("nr_frames", Offset(ref cst, ref cst.NrFrames)), ("status", Offset(ref cst, ref cst.Status)), ("frame_list", Offset(ref cst, ref cst.FrameList))]),
            ("struct gnttab_get_status_frames", Unsafe.SizeOf<CompatGnttabGetStatusFrames>(),
            [("nr_frames", Offset(ref cgs, ref cgs.NrFrames)), ("dom", Offset(ref cgs, ref cgs.Dom)), ("status", Offset(ref cgs, ref cgs.Status)), ("frame_list", Offset(ref cgs, ref cgs.FrameList))]),
            ("xen_pfn_t", sizeof(uint), []));
    }

    [Fact]
    public void Copy_structs()
    {
        var c = default(GnttabCopy);
        AssertLayout(Headers, 64, ("struct gnttab_copy", Unsafe.SizeOf<GnttabCopy>(),
        [
            ("source", Offset(ref c, ref c.Source)), ("source.u.ref", Offset(ref c, ref c.Source.Ref)), ("source.u.gmfn", Offset(ref c, ref c.Source.Gmfn)),
            ("source.domid", Offset(ref c, ref c.Source.DomId)), ("source.offset", Offset(ref c, ref c.Source.Offset)),
            ("dest", Offset(ref c, ref c.Dest)), ("dest.u.ref", Offset(ref c, ref c.Dest.Ref)), ("dest.domid", Offset(ref c, ref c.Dest.DomId)), ("dest.offset", Offset(ref c, ref c.Dest.Offset)),
            ("len", Offset(ref c, ref c.Len)), ("flags", Offset(ref c, ref c.Flags)), ("status", Offset(ref c, ref c.Status)),
        ]));
        var k = default(CompatGnttabCopy);
        AssertLayout(Headers, 32, ("struct gnttab_copy", Unsafe.SizeOf<CompatGnttabCopy>(),
        [
            ("source", Offset(ref k, ref k.Source)), ("source.u.ref", Offset(ref k, ref k.Source.Ref)), ("source.u.gmfn", Offset(ref k, ref k.Source.Gmfn)),
            ("source.domid", Offset(ref k, ref k.Source.DomId)), ("source.offset", Offset(ref k, ref k.Source.Offset)),
            ("dest", Offset(ref k, ref k.Dest)), ("dest.u.gmfn", Offset(ref k, ref k.Dest.Gmfn)), ("dest.domid", Offset(ref k, ref k.Dest.DomId)), ("dest.offset", Offset(ref k, ref k.Dest.Offset)),
            ("len", Offset(ref k, ref k.Len)), ("flags", Offset(ref k, ref k.Flags)), ("status", Offset(ref k, ref k.Status)),
        ]));
    }

    [Fact]
    public void Constants_match_the_headers()
    {
        (string Expr, long Value)[] constants =
        [
            ("GNTTABOP_map_grant_ref", (long)GrantTableOp.MapGrantRef), ("GNTTABOP_unmap_grant_ref", (long)GrantTableOp.UnmapGrantRef),
            ("GNTTABOP_setup_table", (long)GrantTableOp.SetupTable), ("GNTTABOP_dump_table", (long)GrantTableOp.DumpTable),
            ("GNTTABOP_transfer", (long)GrantTableOp.Transfer), ("GNTTABOP_copy", (long)GrantTableOp.Copy),
            ("GNTTABOP_query_size", (long)GrantTableOp.QuerySize), ("GNTTABOP_unmap_and_replace", (long)GrantTableOp.UnmapAndReplace),
            ("GNTTABOP_set_version", (long)GrantTableOp.SetVersion), ("GNTTABOP_get_status_frames", (long)GrantTableOp.GetStatusFrames),
            ("GNTTABOP_get_version", (long)GrantTableOp.GetVersion), ("GNTTABOP_swap_grant_ref", (long)GrantTableOp.SwapGrantRef),
            ("GNTTABOP_cache_flush", (long)GrantTableOp.CacheFlush),
            ("GTF_permit_access", (long)GrantEntryFlags.PermitAccess), ("GTF_accept_transfer", (long)GrantEntryFlags.AcceptTransfer),
            ("GTF_transitive", (long)GrantEntryFlags.Transitive), ("GTF_type_mask", (long)GrantEntryFlags.TypeMask),
            ("GTF_readonly", (long)GrantEntryFlags.ReadOnly), ("GTF_reading", (long)GrantEntryFlags.Reading), ("GTF_writing", (long)GrantEntryFlags.Writing),
            ("GTF_PWT", (long)GrantEntryFlags.Pwt), ("GTF_PCD", (long)GrantEntryFlags.Pcd), ("GTF_PAT", (long)GrantEntryFlags.Pat), ("GTF_sub_page", (long)GrantEntryFlags.SubPage),
            ("GNTMAP_device_map", (long)GrantMapFlags.DeviceMap), ("GNTMAP_host_map", (long)GrantMapFlags.HostMap), ("GNTMAP_readonly", (long)GrantMapFlags.ReadOnly),
            ("GNTMAP_application_map", (long)GrantMapFlags.ApplicationMap), ("GNTMAP_contains_pte", (long)GrantMapFlags.ContainsPte),
            ("GNTCOPY_source_gref", (long)GrantCopyFlags.SourceGref), ("GNTCOPY_dest_gref", (long)GrantCopyFlags.DestGref),
            ("GNTST_okay", (long)GrantStatus.Okay), ("GNTST_general_error", (long)GrantStatus.GeneralError), ("GNTST_bad_domain", (long)GrantStatus.BadDomain),
            ("GNTST_bad_gntref", (long)GrantStatus.BadGntref), ("GNTST_bad_handle", (long)GrantStatus.BadHandle), ("GNTST_bad_virt_addr", (long)GrantStatus.BadVirtAddr),
            ("GNTST_bad_dev_addr", (long)GrantStatus.BadDevAddr), ("GNTST_no_device_space", (long)GrantStatus.NoDeviceSpace),
            ("GNTST_permission_denied", (long)GrantStatus.PermissionDenied), ("GNTST_bad_page", (long)GrantStatus.BadPage),
            ("GNTST_bad_copy_arg", (long)GrantStatus.BadCopyArg), ("GNTST_address_too_big", (long)GrantStatus.AddressTooBig),
            ("GNTST_eagain", (long)GrantStatus.Eagain), ("GNTST_no_space", (long)GrantStatus.NoSpace),
            ("XENMAPIDX_grant_table_status", (long)GrantTableHost.GrantTableStatusIndex), ("GNTTAB_NR_RESERVED_ENTRIES", 8),
        ];
        AssertValues(Headers, 64, constants);
    }
}
