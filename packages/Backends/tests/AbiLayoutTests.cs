using System.Runtime.CompilerServices;
using VmmKit.Backends.Block;
using VmmKit.Backends.Console;
using VmmKit.Backends.Rings;
using VmmKit.TestSupport;

namespace VmmKit.Backends.Tests;

/// <summary>Every mirrored struct against gcc and Xen's io/console.h, io/blkif.h and io/ring.h, for x86-64 and i386.</summary>
public class AbiLayoutTests
{
    private static long Off<T, TField>(ref T s, ref TField field) =>
        Unsafe.ByteOffset(ref Unsafe.As<T, byte>(ref s), ref Unsafe.As<TField, byte>(ref field));

    private static void Verify(int bits, params (string CType, long Size, (string Member, long Offset)[] Fields)[] checks)
    {
        string[] headers = ["xen/xen.h", "xen/grant_table.h", "xen/io/console.h", "xen/io/blkif.h", "xen/io/protocols.h"];
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
            Assert.True(expected[i].Value == values[i], $"{expected[i].What}: C# {expected[i].Value}, gcc {values[i]}");
    }

    [Fact]
    public void Xencons_interface()
    {
        var r = default(XenconsInterface);
        foreach (int bits in new[] { 64, 32 })
        {
            Verify(bits, ("struct xencons_interface", Unsafe.SizeOf<XenconsInterface>(),
            [
                ("in", Off(ref r, ref r.In[0])), ("out", Off(ref r, ref r.Out[0])), ("in_cons", Off(ref r, ref r.InCons)),
                ("in_prod", Off(ref r, ref r.InProd)), ("out_cons", Off(ref r, ref r.OutCons)), ("out_prod", Off(ref r, ref r.OutProd)),
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
        Verify(64,
            ("struct blkif_request_segment", Unsafe.SizeOf<BlkifRequestSegment>(), [("gref", Off(ref seg, ref seg.Gref)), ("first_sect", Off(ref seg, ref seg.FirstSect)), ("last_sect", Off(ref seg, ref seg.LastSect))]),
            ("struct blkif_request", Unsafe.SizeOf<BlkifRequest>(),
            [
                ("operation", Off(ref req, ref req.Operation)), ("nr_segments", Off(ref req, ref req.NrSegments)), ("handle", Off(ref req, ref req.Handle)),
                ("id", Off(ref req, ref req.Id)), ("sector_number", Off(ref req, ref req.SectorNumber)), ("seg", Off(ref req, ref req.Seg[0])),
            ]),
            ("struct blkif_request_indirect", Unsafe.SizeOf<BlkifRequestIndirect>(),
            [
                ("operation", Off(ref ind, ref ind.Operation)), ("indirect_op", Off(ref ind, ref ind.IndirectOp)), ("nr_segments", Off(ref ind, ref ind.NrSegments)),
                ("id", Off(ref ind, ref ind.Id)), ("sector_number", Off(ref ind, ref ind.SectorNumber)), ("handle", Off(ref ind, ref ind.Handle)),
                ("indirect_grefs", Off(ref ind, ref ind.IndirectGrefs[0])),
            ]),
            ("struct blkif_response", Unsafe.SizeOf<BlkifResponse>(), [("id", Off(ref rsp, ref rsp.Id)), ("operation", Off(ref rsp, ref rsp.Operation)), ("status", Off(ref rsp, ref rsp.Status))]),
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
        Verify(32,
            ("struct blkif_request", Unsafe.SizeOf<BlkifX86_32Request>(),
            [
                ("operation", Off(ref req, ref req.Operation)), ("nr_segments", Off(ref req, ref req.NrSegments)), ("handle", Off(ref req, ref req.Handle)),
                ("id", Off(ref req, ref req.Id)), ("sector_number", Off(ref req, ref req.SectorNumber)), ("seg", Off(ref req, ref req.Seg[0])),
            ]),
            ("struct blkif_request_indirect", Unsafe.SizeOf<BlkifX86_32RequestIndirect>(),
            [
                ("operation", Off(ref ind, ref ind.Operation)), ("indirect_op", Off(ref ind, ref ind.IndirectOp)), ("nr_segments", Off(ref ind, ref ind.NrSegments)),
                ("id", Off(ref ind, ref ind.Id)), ("sector_number", Off(ref ind, ref ind.SectorNumber)), ("handle", Off(ref ind, ref ind.Handle)),
                ("indirect_grefs", Off(ref ind, ref ind.IndirectGrefs[0])),
            ]),
            ("struct blkif_response", Unsafe.SizeOf<BlkifX86_32Response>(), [("id", Off(ref rsp, ref rsp.Id)), ("operation", Off(ref rsp, ref rsp.Operation)), ("status", Off(ref rsp, ref rsp.Status))]),
            ("struct blkif_sring", SharedRing.EntriesOffset + Unsafe.SizeOf<BlkifX86_32Request>(), [("ring", SharedRing.EntriesOffset)]));
    }

    [Fact]
    public void Ring_sizes_follow_ring_h()
    {
        // __CONST_RING_SIZE(blkif, 4096) is 32 in both ABIs; Linux's blkback computes the same for larger orders.
        Verify(64, ("char[__CONST_RING_SIZE(blkif, 4096)]", SharedRing.Size(1, 112), []), ("char[__CONST_RING_SIZE(blkif, 4 * 4096)]", SharedRing.Size(4, 112), []));
        Verify(32, ("char[__CONST_RING_SIZE(blkif, 4096)]", SharedRing.Size(1, 108), []), ("char[__CONST_RING_SIZE(blkif, 8 * 4096)]", SharedRing.Size(8, 108), []));
        Assert.Equal(ConsoleBackend.ReservedConsoleGrant, (uint)0);
        Verify(64, ("char[GNTTAB_RESERVED_CONSOLE + 1]", ConsoleBackend.ReservedConsoleGrant + 1, []), ("char[GNTTAB_RESERVED_XENSTORE + 1]", ConsoleBackend.ReservedXenStoreGrant + 1, []));
    }
}
