using System.Runtime.CompilerServices;
using VmmKit.TestSupport;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Every C# struct mirroring a grant-table struct, checked against gcc and /usr/include/xen/grant_table.h:
/// sizeof and every offsetof, for x86-64 and, for the structs a 32-bit (compat) caller uses, i386.
/// </summary>
public class AbiLayoutTests
{
    private static long Off<T, TField>(ref T s, ref TField field) =>
        Unsafe.ByteOffset(ref Unsafe.As<T, byte>(ref s), ref Unsafe.As<TField, byte>(ref field));

    private static void Verify(int bits, params (string CType, int Size, (string Member, long Offset)[] Fields)[] checks)
    {
        string[] headers = ["xen/xen.h", "xen/grant_table.h", "xen/memory.h"];
        var exprs = new List<string>();
        var expected = new List<(long Value, string What)>();
        foreach (var (cType, size, fields) in checks)
        {
            exprs.Add($"sizeof({cType})");
            expected.Add((size, $"sizeof({cType}) [{bits}-bit]"));
            foreach (var f in fields)
            {
                exprs.Add($"offsetof({cType}, {f.Member})");
                expected.Add((f.Offset, $"offsetof({cType}, {f.Member}) [{bits}-bit]"));
            }
        }

        IReadOnlyList<long> values = bits == 64 ? XenAbiLayout.Evaluate(headers, exprs) : I386Layout.Evaluate(headers, exprs);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.True(expected[i].Value == values[i], $"{expected[i].What}: C# {expected[i].Value}, gcc {values[i]}");
        }
    }

    [Fact]
    public void Grant_entries()
    {
        var v1 = default(GrantEntryV1);
        var v2 = default(GrantEntryV2);
        foreach (int bits in new[] { 64, 32 })
        {
            Verify(bits,
                ("struct grant_entry_v1", Unsafe.SizeOf<GrantEntryV1>(), [("flags", Off(ref v1, ref v1.Flags)), ("domid", Off(ref v1, ref v1.DomId)), ("frame", Off(ref v1, ref v1.Frame))]),
                ("union grant_entry_v2", Unsafe.SizeOf<GrantEntryV2>(),
                [
                    ("hdr.flags", Off(ref v2, ref v2.Flags)), ("hdr.domid", Off(ref v2, ref v2.DomId)),
                    ("full_page.pad0", Off(ref v2, ref v2.FullPagePad0)), ("full_page.frame", Off(ref v2, ref v2.Frame)),
                    ("sub_page.page_off", Off(ref v2, ref v2.SubPageOffset)), ("sub_page.length", Off(ref v2, ref v2.SubPageLength)), ("sub_page.frame", Off(ref v2, ref v2.Frame)),
                    ("transitive.trans_domid", Off(ref v2, ref v2.TransDomId)), ("transitive.pad0", Off(ref v2, ref v2.TransPad0)), ("transitive.gref", Off(ref v2, ref v2.TransGref)),
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
            Verify(bits,
                ("struct gnttab_map_grant_ref", Unsafe.SizeOf<GnttabMapGrantRef>(),
                [
                    ("host_addr", Off(ref m, ref m.HostAddr)), ("flags", Off(ref m, ref m.Flags)), ("ref", Off(ref m, ref m.Ref)), ("dom", Off(ref m, ref m.Dom)),
                    ("status", Off(ref m, ref m.Status)), ("handle", Off(ref m, ref m.Handle)), ("dev_bus_addr", Off(ref m, ref m.DevBusAddr)),
                ]),
                ("struct gnttab_unmap_grant_ref", Unsafe.SizeOf<GnttabUnmapGrantRef>(),
                [("host_addr", Off(ref u, ref u.HostAddr)), ("dev_bus_addr", Off(ref u, ref u.DevBusAddr)), ("handle", Off(ref u, ref u.Handle)), ("status", Off(ref u, ref u.Status))]),
                ("struct gnttab_unmap_and_replace", Unsafe.SizeOf<GnttabUnmapAndReplace>(),
                [("host_addr", Off(ref r, ref r.HostAddr)), ("new_addr", Off(ref r, ref r.NewAddr)), ("handle", Off(ref r, ref r.Handle)), ("status", Off(ref r, ref r.Status))]),
                ("struct gnttab_swap_grant_ref", Unsafe.SizeOf<GnttabSwapGrantRef>(),
                [("ref_a", Off(ref s, ref s.RefA)), ("ref_b", Off(ref s, ref s.RefB)), ("status", Off(ref s, ref s.Status))]));
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
            Verify(bits,
                ("struct gnttab_query_size", Unsafe.SizeOf<GnttabQuerySize>(),
                [("dom", Off(ref q, ref q.Dom)), ("nr_frames", Off(ref q, ref q.NrFrames)), ("max_nr_frames", Off(ref q, ref q.MaxNrFrames)), ("status", Off(ref q, ref q.Status))]),
                ("struct gnttab_set_version", Unsafe.SizeOf<GnttabSetVersion>(), [("version", Off(ref sv, ref sv.Version))]),
                ("struct gnttab_get_version", Unsafe.SizeOf<GnttabGetVersion>(), [("dom", Off(ref gv, ref gv.Dom)), ("pad", Off(ref gv, ref gv.Pad)), ("version", Off(ref gv, ref gv.Version))]));
        }

        var st = default(GnttabSetupTable);
        var gs = default(GnttabGetStatusFrames);
        Verify(64,
            ("struct gnttab_setup_table", Unsafe.SizeOf<GnttabSetupTable>(),
            [("dom", Off(ref st, ref st.Dom)), ("nr_frames", Off(ref st, ref st.NrFrames)), ("status", Off(ref st, ref st.Status)), ("frame_list", Off(ref st, ref st.FrameList))]),
            ("struct gnttab_get_status_frames", Unsafe.SizeOf<GnttabGetStatusFrames>(),
            [("nr_frames", Off(ref gs, ref gs.NrFrames)), ("dom", Off(ref gs, ref gs.Dom)), ("status", Off(ref gs, ref gs.Status)), ("frame_list", Off(ref gs, ref gs.FrameList))]),
            ("xen_pfn_t", sizeof(ulong), []));
        var cst = default(CompatGnttabSetupTable);
        var cgs = default(CompatGnttabGetStatusFrames);
        Verify(32,
            ("struct gnttab_setup_table", Unsafe.SizeOf<CompatGnttabSetupTable>(),
            [("dom", Off(ref cst, ref cst.Dom)), ("nr_frames", Off(ref cst, ref cst.NrFrames)), ("status", Off(ref cst, ref cst.Status)), ("frame_list", Off(ref cst, ref cst.FrameList))]),
            ("struct gnttab_get_status_frames", Unsafe.SizeOf<CompatGnttabGetStatusFrames>(),
            [("nr_frames", Off(ref cgs, ref cgs.NrFrames)), ("dom", Off(ref cgs, ref cgs.Dom)), ("status", Off(ref cgs, ref cgs.Status)), ("frame_list", Off(ref cgs, ref cgs.FrameList))]),
            ("xen_pfn_t", sizeof(uint), []));
    }

    [Fact]
    public void Copy_structs()
    {
        var c = default(GnttabCopy);
        Verify(64, ("struct gnttab_copy", Unsafe.SizeOf<GnttabCopy>(),
        [
            ("source", Off(ref c, ref c.Source)), ("source.u.ref", Off(ref c, ref c.Source.Ref)), ("source.u.gmfn", Off(ref c, ref c.Source.Gmfn)),
            ("source.domid", Off(ref c, ref c.Source.DomId)), ("source.offset", Off(ref c, ref c.Source.Offset)),
            ("dest", Off(ref c, ref c.Dest)), ("dest.u.ref", Off(ref c, ref c.Dest.Ref)), ("dest.domid", Off(ref c, ref c.Dest.DomId)), ("dest.offset", Off(ref c, ref c.Dest.Offset)),
            ("len", Off(ref c, ref c.Len)), ("flags", Off(ref c, ref c.Flags)), ("status", Off(ref c, ref c.Status)),
        ]));
        var k = default(CompatGnttabCopy);
        Verify(32, ("struct gnttab_copy", Unsafe.SizeOf<CompatGnttabCopy>(),
        [
            ("source", Off(ref k, ref k.Source)), ("source.u.ref", Off(ref k, ref k.Source.Ref)), ("source.u.gmfn", Off(ref k, ref k.Source.Gmfn)),
            ("source.domid", Off(ref k, ref k.Source.DomId)), ("source.offset", Off(ref k, ref k.Source.Offset)),
            ("dest", Off(ref k, ref k.Dest)), ("dest.u.gmfn", Off(ref k, ref k.Dest.Gmfn)), ("dest.domid", Off(ref k, ref k.Dest.DomId)), ("dest.offset", Off(ref k, ref k.Dest.Offset)),
            ("len", Off(ref k, ref k.Len)), ("flags", Off(ref k, ref k.Flags)), ("status", Off(ref k, ref k.Status)),
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
        IReadOnlyList<long> values = XenAbiLayout.Evaluate(["xen/xen.h", "xen/grant_table.h", "xen/memory.h"], constants.Select(c => c.Expr).ToList());
        for (int i = 0; i < constants.Length; i++)
        {
            Assert.True(constants[i].Value == values[i], $"{constants[i].Expr}: C# {constants[i].Value}, header {values[i]}");
        }
    }
}
