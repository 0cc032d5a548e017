using System.Runtime.CompilerServices;
using VmmKit.Backends.Block;
using VmmKit.Backends.Console;
using VmmKit.Backends.Rings;
using static VmmKit.TestSupport.XenAbiLayout;

namespace VmmKit.Backends.Tests;

/// <summary>Every mirrored struct against gcc and Xen's io/console.h, io/blkif.h and io/ring.h, for x86-64 and i386.</summary>
public class AbiLayoutTests
{
    private static readonly string[] Headers = ["xen/xen.h", "xen/grant_table.h", "xen/io/console.h", "xen/io/blkif.h", "xen/io/protocols.h"];

    [Fact]
    public void Xencons_interface()
    {
        var r = default(XenconsInterface);
        foreach (int bits in new[] { 64, 32 })
        {
            AssertLayout(Headers, bits, ("struct xencons_interface", Unsafe.SizeOf<XenconsInterface>(),
            [
                ("in", Offset(ref r, ref r.In[0])), ("out", Offset(ref r, ref r.Out[0])), ("in_cons", Offset(ref r, ref r.InCons)),
                ("in_prod", Offset(ref r, ref r.InProd)), ("out_cons", Offset(ref r, ref r.OutCons)), ("out_prod", Offset(ref r, ref r.OutProd)),
            ]));
        }
    }

    [Fact]
    public void Blkif_native_layout_is_the_x86_64_abi()
    {
        var req = default(BlkifRequest);
        var ind = default(BlkifRequestIndirect);
        var rsp = default(BlkifResponse);
        var seg = default(BlkifRequestSegment);
        AssertLayout(Headers, 64,
            ("struct blkif_request_segment", Unsafe.SizeOf<BlkifRequestSegment>(), [("gref", Offset(ref seg, ref seg.Gref)), ("first_sect", Offset(ref seg, ref seg.FirstSect)), ("last_sect", Offset(ref seg, ref seg.LastSect))]),
            ("struct blkif_request", Unsafe.SizeOf<BlkifRequest>(),
            [
                ("operation", Offset(ref req, ref req.Operation)), ("nr_segments", Offset(ref req, ref req.NrSegments)), ("handle", Offset(ref req, ref req.Handle)),
                ("id", Offset(ref req, ref req.Id)), ("sector_number", Offset(ref req, ref req.SectorNumber)), ("seg", Offset(ref req, ref req.Seg[0])),
            ]),
            ("struct blkif_request_indirect", Unsafe.SizeOf<BlkifRequestIndirect>(),
            [
                ("operation", Offset(ref ind, ref ind.Operation)), ("indirect_op", Offset(ref ind, ref ind.IndirectOp)), ("nr_segments", Offset(ref ind, ref ind.NrSegments)),
                ("id", Offset(ref ind, ref ind.Id)), ("sector_number", Offset(ref ind, ref ind.SectorNumber)), ("handle", Offset(ref ind, ref ind.Handle)),
                ("indirect_grefs", Offset(ref ind, ref ind.IndirectGrefs[0])),
            ]),
            ("struct blkif_response", Unsafe.SizeOf<BlkifResponse>(), [("id", Offset(ref rsp, ref rsp.Id)), ("operation", Offset(ref rsp, ref rsp.Operation)), ("status", Offset(ref rsp, ref rsp.Status))]),
            ("struct blkif_sring", SharedRing.EntriesOffset + Unsafe.SizeOf<BlkifRequest>(),
                [("req_prod", SharedRing.ReqProdOffset), ("req_event", SharedRing.ReqEventOffset), ("rsp_prod", SharedRing.RspProdOffset), ("rsp_event", SharedRing.RspEventOffset), ("ring", SharedRing.EntriesOffset)]),
            ("union blkif_sring_entry", Unsafe.SizeOf<BlkifRequest>(), []));
    }

    [Fact]
    public void Blkif_x86_32_abi_is_what_i386_compiles()
    {
        var req = default(BlkifX86_32Request);
        var ind = default(BlkifX86_32RequestIndirect);
        var rsp = default(BlkifX86_32Response);
        AssertLayout(Headers, 32,
            ("struct blkif_request", Unsafe.SizeOf<BlkifX86_32Request>(),
            [
                ("operation", Offset(ref req, ref req.Operation)), ("nr_segments", Offset(ref req, ref req.NrSegments)), ("handle", Offset(ref req, ref req.Handle)),
                ("id", Offset(ref req, ref req.Id)), ("sector_number", Offset(ref req, ref req.SectorNumber)), ("seg", Offset(ref req, ref req.Seg[0])),
            ]),
            ("struct blkif_request_indirect", Unsafe.SizeOf<BlkifX86_32RequestIndirect>(),
            [
                ("operation", Offset(ref ind, ref ind.Operation)), ("indirect_op", Offset(ref ind, ref ind.IndirectOp)), ("nr_segments", Offset(ref ind, ref ind.NrSegments)),
                ("id", Offset(ref ind, ref ind.Id)), ("sector_number", Offset(ref ind, ref ind.SectorNumber)), ("handle", Offset(ref ind, ref ind.Handle)),
                ("indirect_grefs", Offset(ref ind, ref ind.IndirectGrefs[0])),
            ]),
            ("struct blkif_response", Unsafe.SizeOf<BlkifX86_32Response>(), [("id", Offset(ref rsp, ref rsp.Id)), ("operation", Offset(ref rsp, ref rsp.Operation)), ("status", Offset(ref rsp, ref rsp.Status))]),
            ("struct blkif_sring", SharedRing.EntriesOffset + Unsafe.SizeOf<BlkifX86_32Request>(), [("ring", SharedRing.EntriesOffset)]));
    }

    [Fact]
    public void Ring_sizes_follow_ring_h()
    {
        // __CONST_RING_SIZE(blkif, 4096) is 32 in both ABIs; Linux's blkback computes the same for larger orders.
        AssertLayout(Headers, 64, ("char[__CONST_RING_SIZE(blkif, 4096)]", SharedRing.Size(1, 112), []), ("char[__CONST_RING_SIZE(blkif, 4 * 4096)]", SharedRing.Size(4, 112), []));
        AssertLayout(Headers, 32, ("char[__CONST_RING_SIZE(blkif, 4096)]", SharedRing.Size(1, 108), []), ("char[__CONST_RING_SIZE(blkif, 8 * 4096)]", SharedRing.Size(8, 108), []));
        Assert.Equal(ConsoleBackend.ReservedConsoleGrant, (uint)0);
        AssertLayout(Headers, 64, ("char[GNTTAB_RESERVED_CONSOLE + 1]", ConsoleBackend.ReservedConsoleGrant + 1, []), ("char[GNTTAB_RESERVED_XENSTORE + 1]", ConsoleBackend.ReservedXenStoreGrant + 1, []));
    }
}
