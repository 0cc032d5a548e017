using System.Runtime.CompilerServices;
using VmmKit.Hypercall;
using VmmKit.TestSupport;

namespace VmmKit.Hypercall.Tests;

/// <summary>
/// Every C# struct mirroring a Xen struct, checked against gcc and /usr/include/xen: sizeof and
/// every offsetof, for x86-64 (native structs) and i386 (Compat* structs and structs whose
/// layout is the same in both ABIs).
/// </summary>
public class AbiLayoutTests
{
    private static long Off<T, TField>(ref T s, ref TField field) =>
        Unsafe.ByteOffset(ref Unsafe.As<T, byte>(ref s), ref Unsafe.As<TField, byte>(ref field));

    private readonly List<(int Bits, string Header, string CType, int Size, (string Member, long Offset)[] Fields)> _pending = [];

    private void Check64(string header, string cType, int size, params (string Member, long Offset)[] fields) =>
        Check(header, cType, size, fields, bits: 64);

    private void Check32(string header, string cType, int size, params (string Member, long Offset)[] fields) =>
        Check(header, cType, size, fields, bits: 32);

    // Checks are batched: one gcc run per test and ABI.
    private void Check(string header, string cType, int size, (string Member, long Offset)[] fields, int bits) =>
        _pending.Add((bits, header, cType, size, fields));

    private void Verify()
    {
        Assert.NotEmpty(_pending);
        foreach (var group in _pending.GroupBy(p => p.Bits))
        {
            string[] headers = ["xen/xen.h", .. group.Select(p => p.Header).Distinct()];
            var exprs = new List<string>();
            var expected = new List<(long Value, string What)>();
            foreach (var (bits, _, cType, size, fields) in group)
            {
                exprs.Add($"sizeof({cType})");
                expected.Add((size, $"sizeof({cType}) [{bits}-bit]"));
                foreach (var f in fields)
                {
                    exprs.Add($"offsetof({cType}, {f.Member})");
                    expected.Add((f.Offset, $"offsetof({cType}, {f.Member}) [{bits}-bit]"));
                }
            }
            IReadOnlyList<long> values = group.Key == 64 ? XenAbiLayout.Evaluate(headers, exprs) : I386Layout.Evaluate(headers, exprs);
            for (int i = 0; i < expected.Count; i++)
                Assert.True(expected[i].Value == values[i], $"{expected[i].What}: C# {expected[i].Value}, gcc {values[i]}");
        }
        _pending.Clear();
    }

    [Fact]
    public void Multicall_entry()
    {
        var s = default(MulticallEntry);
        Check64("xen/xen.h", "struct multicall_entry", Unsafe.SizeOf<MulticallEntry>(),
            ("op", Off(ref s, ref s.Op)), ("result", Off(ref s, ref s.Result)), ("args", Off(ref s, ref s.Args)), ("args[5]", Off(ref s, ref s.Args[5])));
        var c = default(CompatMulticallEntry);
        Check32("xen/xen.h", "struct multicall_entry", Unsafe.SizeOf<CompatMulticallEntry>(),
            ("op", Off(ref c, ref c.Op)), ("result", Off(ref c, ref c.Result)), ("args", Off(ref c, ref c.Args)), ("args[5]", Off(ref c, ref c.Args[5])));
        Verify();
    }

    [Fact]
    public void Xen_version_structs()
    {
        foreach (int bits in new[] { 64, 32 })
        {
            var ci = default(XenCompileInfo);
            Check("xen/version.h", "struct xen_compile_info", Unsafe.SizeOf<XenCompileInfo>(),
                [("compiler", Off(ref ci, ref ci.Compiler)), ("compile_by", Off(ref ci, ref ci.CompileBy)),
                 ("compile_domain", Off(ref ci, ref ci.CompileDomain)), ("compile_date", Off(ref ci, ref ci.CompileDate))], bits);
            var fi = default(XenFeatureInfo);
            Check("xen/version.h", "struct xen_feature_info", Unsafe.SizeOf<XenFeatureInfo>(),
                [("submap_idx", Off(ref fi, ref fi.SubmapIdx)), ("submap", Off(ref fi, ref fi.Submap))], bits);
            var bi = default(XenBuildId);
            Check("xen/version.h", "struct xen_build_id", Unsafe.SizeOf<XenBuildId>(), [("len", Off(ref bi, ref bi.Len)), ("buf", Unsafe.SizeOf<XenBuildId>())], bits);
            Check("xen/version.h", "xen_extraversion_t", Unsafe.SizeOf<XenExtraversion>(), [], bits);
            Check("xen/version.h", "xen_capabilities_info_t", Unsafe.SizeOf<XenCapabilitiesInfo>(), [], bits);
            Check("xen/version.h", "xen_changeset_info_t", Unsafe.SizeOf<XenChangesetInfo>(), [], bits);
            Check("xen/version.h", "xen_commandline_t", Unsafe.SizeOf<XenCommandline>(), [], bits);
            Check("xen/version.h", "xen_domain_handle_t", Unsafe.SizeOf<XenDomainHandle>(), [], bits);
        }
        var pp = default(XenPlatformParameters);
        Check64("xen/version.h", "struct xen_platform_parameters", Unsafe.SizeOf<XenPlatformParameters>(), ("virt_start", Off(ref pp, ref pp.VirtStart)));
        var cpp = default(CompatXenPlatformParameters);
        Check32("xen/version.h", "struct xen_platform_parameters", Unsafe.SizeOf<CompatXenPlatformParameters>(), ("virt_start", Off(ref cpp, ref cpp.VirtStart)));
        Verify();
    }

    [Fact]
    public void Sched_op_structs()
    {
        foreach (int bits in new[] { 64, 32 })
        {
            var sd = default(SchedShutdown);
            Check("xen/sched.h", "struct sched_shutdown", Unsafe.SizeOf<SchedShutdown>(), [("reason", Off(ref sd, ref sd.Reason))], bits);
            var rs = default(SchedRemoteShutdown);
            Check("xen/sched.h", "struct sched_remote_shutdown", Unsafe.SizeOf<SchedRemoteShutdown>(),
                [("domain_id", Off(ref rs, ref rs.DomainId)), ("reason", Off(ref rs, ref rs.Reason))], bits);
            var wd = default(SchedWatchdog);
            Check("xen/sched.h", "struct sched_watchdog", Unsafe.SizeOf<SchedWatchdog>(), [("id", Off(ref wd, ref wd.Id)), ("timeout", Off(ref wd, ref wd.Timeout))], bits);
            var po = default(SchedPinOverride);
            Check("xen/sched.h", "struct sched_pin_override", Unsafe.SizeOf<SchedPinOverride>(), [("pcpu", Off(ref po, ref po.Pcpu))], bits);
        }
        var p = default(SchedPoll);
        Check64("xen/sched.h", "struct sched_poll", Unsafe.SizeOf<SchedPoll>(),
            ("ports", Off(ref p, ref p.Ports)), ("nr_ports", Off(ref p, ref p.NrPorts)), ("timeout", Off(ref p, ref p.Timeout)));
        var cp = default(CompatSchedPoll);
        Check32("xen/sched.h", "struct sched_poll", Unsafe.SizeOf<CompatSchedPoll>(),
            ("ports", Off(ref cp, ref cp.Ports)), ("nr_ports", Off(ref cp, ref cp.NrPorts)), ("timeout", Off(ref cp, ref cp.Timeout)));
        Verify();
    }

    [Fact]
    public void Hvm_param()
    {
        foreach (int bits in new[] { 64, 32 })
        {
            var s = default(XenHvmParam);
            Check("xen/hvm/hvm_op.h", "struct xen_hvm_param", Unsafe.SizeOf<XenHvmParam>(),
                [("domid", Off(ref s, ref s.Domid)), ("pad", Off(ref s, ref s.Pad)), ("index", Off(ref s, ref s.Index)), ("value", Off(ref s, ref s.Value))], bits);
        }
        Verify();
    }

    [Fact]
    public void Memory_op_structs()
    {
        var a = default(XenAddToPhysmap);
        Check64("xen/memory.h", "struct xen_add_to_physmap", Unsafe.SizeOf<XenAddToPhysmap>(),
            ("domid", Off(ref a, ref a.Domid)), ("size", Off(ref a, ref a.Size)), ("space", Off(ref a, ref a.Space)),
            ("idx", Off(ref a, ref a.Idx)), ("gpfn", Off(ref a, ref a.Gpfn)));
        var ca = default(CompatXenAddToPhysmap);
        Check32("xen/memory.h", "struct xen_add_to_physmap", Unsafe.SizeOf<CompatXenAddToPhysmap>(),
            ("domid", Off(ref ca, ref ca.Domid)), ("size", Off(ref ca, ref ca.Size)), ("space", Off(ref ca, ref ca.Space)),
            ("idx", Off(ref ca, ref ca.Idx)), ("gpfn", Off(ref ca, ref ca.Gpfn)));
        var mm = default(XenMemoryMap);
        Check64("xen/memory.h", "struct xen_memory_map", Unsafe.SizeOf<XenMemoryMap>(),
            ("nr_entries", Off(ref mm, ref mm.NrEntries)), ("buffer", Off(ref mm, ref mm.Buffer)));
        var cmm = default(CompatXenMemoryMap);
        Check32("xen/memory.h", "struct xen_memory_map", Unsafe.SizeOf<CompatXenMemoryMap>(),
            ("nr_entries", Off(ref cmm, ref cmm.NrEntries)), ("buffer", Off(ref cmm, ref cmm.Buffer)));
        Check64("xen/memory.h", "domid_t", sizeof(ushort));
        Check32("xen/memory.h", "domid_t", sizeof(ushort));
        Verify();
    }

    [Fact]
    public void E820_entry_matches_the_packed_bios_layout()
    {
        // Xen's struct e820entry is not in the public headers; Linux's uapi boot_e820_entry is the same packed layout.
        var e = default(E820Entry);
        var v = XenAbiLayout.Evaluate(["asm/bootparam.h"],
            ["sizeof(struct boot_e820_entry)", "offsetof(struct boot_e820_entry, addr)", "offsetof(struct boot_e820_entry, size)", "offsetof(struct boot_e820_entry, type)"]);
        Assert.Equal([Unsafe.SizeOf<E820Entry>(), Off(ref e, ref e.Addr), Off(ref e, ref e.Size), Off(ref e, ref e.Type)], v);
    }

    [Fact]
    public void Hvm_start_info()
    {
        const string h = "xen/arch-x86/hvm/start_info.h";
        foreach (int bits in new[] { 64, 32 })
        {
            var s = default(HvmStartInfo);
            Check(h, "struct hvm_start_info", Unsafe.SizeOf<HvmStartInfo>(),
                [("magic", Off(ref s, ref s.Magic)), ("version", Off(ref s, ref s.Version)), ("flags", Off(ref s, ref s.Flags)),
                 ("nr_modules", Off(ref s, ref s.NrModules)), ("modlist_paddr", Off(ref s, ref s.ModlistPaddr)),
                 ("cmdline_paddr", Off(ref s, ref s.CmdlinePaddr)), ("rsdp_paddr", Off(ref s, ref s.RsdpPaddr)),
                 ("memmap_paddr", Off(ref s, ref s.MemmapPaddr)), ("memmap_entries", Off(ref s, ref s.MemmapEntries)),
                 ("reserved", Off(ref s, ref s.Reserved))], bits);
            var m = default(HvmModlistEntry);
            Check(h, "struct hvm_modlist_entry", Unsafe.SizeOf<HvmModlistEntry>(),
                [("paddr", Off(ref m, ref m.Paddr)), ("size", Off(ref m, ref m.Size)), ("cmdline_paddr", Off(ref m, ref m.CmdlinePaddr)), ("reserved", Off(ref m, ref m.Reserved))], bits);
            var t = default(HvmMemmapTableEntry);
            Check(h, "struct hvm_memmap_table_entry", Unsafe.SizeOf<HvmMemmapTableEntry>(),
                [("addr", Off(ref t, ref t.Addr)), ("size", Off(ref t, ref t.Size)), ("type", Off(ref t, ref t.Type)), ("reserved", Off(ref t, ref t.Reserved))], bits);
        }
        Assert.Equal(HvmStartInfo.Version0Size, (int)XenAbiLayout.OffsetOf(h, "struct hvm_start_info", "memmap_paddr"));
        Verify();
    }

    [Fact]
    public void Shared_info_and_vcpu_info()
    {
        var t = default(VcpuTimeInfo);
        foreach (int bits in new[] { 64, 32 })
            Check("xen/xen.h", "struct vcpu_time_info", Unsafe.SizeOf<VcpuTimeInfo>(),
                [("version", Off(ref t, ref t.Version)), ("pad0", Off(ref t, ref t.Pad0)), ("tsc_timestamp", Off(ref t, ref t.TscTimestamp)),
                 ("system_time", Off(ref t, ref t.SystemTime)), ("tsc_to_system_mul", Off(ref t, ref t.TscToSystemMul)),
                 ("tsc_shift", Off(ref t, ref t.TscShift)), ("flags", Off(ref t, ref t.Flags)), ("pad1", Off(ref t, ref t.Pad1))], bits);

        var v = default(VcpuInfo);
        Check64("xen/xen.h", "struct vcpu_info", Unsafe.SizeOf<VcpuInfo>(),
            ("evtchn_upcall_pending", Off(ref v, ref v.EvtchnUpcallPending)), ("evtchn_upcall_mask", Off(ref v, ref v.EvtchnUpcallMask)),
            ("evtchn_pending_sel", Off(ref v, ref v.EvtchnPendingSel)), ("arch", Off(ref v, ref v.Arch)), ("arch.cr2", Off(ref v, ref v.Arch.Cr2)),
            ("arch.pad", Off(ref v, ref v.Arch.Pad)), ("time", Off(ref v, ref v.Time)));
        var cv = default(CompatVcpuInfo);
        Check32("xen/xen.h", "struct vcpu_info", Unsafe.SizeOf<CompatVcpuInfo>(),
            ("evtchn_upcall_pending", Off(ref cv, ref cv.EvtchnUpcallPending)), ("evtchn_upcall_mask", Off(ref cv, ref cv.EvtchnUpcallMask)),
            ("evtchn_pending_sel", Off(ref cv, ref cv.EvtchnPendingSel)), ("arch", Off(ref cv, ref cv.Arch)), ("arch.cr2", Off(ref cv, ref cv.Arch.Cr2)),
            ("arch.pad", Off(ref cv, ref cv.Arch.Pad)), ("arch.pad[4]", Off(ref cv, ref cv.Arch.Pad[4])), ("time", Off(ref cv, ref cv.Time)));

        var s = new SharedInfo[1];
        ref SharedInfo si = ref s[0];
        Check64("xen/xen.h", "struct shared_info", Unsafe.SizeOf<SharedInfo>(),
            ("vcpu_info", Off(ref si, ref si.VcpuInfo)), ("vcpu_info[31]", Off(ref si, ref si.VcpuInfo[31])),
            ("evtchn_pending", Off(ref si, ref si.EvtchnPending)), ("evtchn_pending[63]", Off(ref si, ref si.EvtchnPending[63])),
            ("evtchn_mask", Off(ref si, ref si.EvtchnMask)), ("wc_version", Off(ref si, ref si.WcVersion)), ("wc_sec", Off(ref si, ref si.WcSec)),
            ("wc_nsec", Off(ref si, ref si.WcNsec)), ("wc_sec_hi", Off(ref si, ref si.WcSecHi)), ("arch", Off(ref si, ref si.Arch)),
            ("arch.max_pfn", Off(ref si, ref si.Arch.MaxPfn)), ("arch.pfn_to_mfn_frame_list_list", Off(ref si, ref si.Arch.PfnToMfnFrameListList)),
            ("arch.nmi_reason", Off(ref si, ref si.Arch.NmiReason)), ("arch.p2m_cr3", Off(ref si, ref si.Arch.P2mCr3)),
            ("arch.p2m_vaddr", Off(ref si, ref si.Arch.P2mVaddr)), ("arch.p2m_generation", Off(ref si, ref si.Arch.P2mGeneration)));
        var cs = new CompatSharedInfo[1];
        ref CompatSharedInfo c = ref cs[0];
        Check32("xen/xen.h", "struct shared_info", Unsafe.SizeOf<CompatSharedInfo>(),
            ("vcpu_info", Off(ref c, ref c.VcpuInfo)), ("vcpu_info[31]", Off(ref c, ref c.VcpuInfo[31])),
            ("evtchn_pending", Off(ref c, ref c.EvtchnPending)), ("evtchn_pending[31]", Off(ref c, ref c.EvtchnPending[31])),
            ("evtchn_mask", Off(ref c, ref c.EvtchnMask)), ("wc_version", Off(ref c, ref c.WcVersion)), ("wc_sec", Off(ref c, ref c.WcSec)),
            ("wc_nsec", Off(ref c, ref c.WcNsec)), ("arch", Off(ref c, ref c.Arch)),
            ("arch.max_pfn", Off(ref c, ref c.Arch.MaxPfn)), ("arch.pfn_to_mfn_frame_list_list", Off(ref c, ref c.Arch.PfnToMfnFrameListList)),
            ("arch.nmi_reason", Off(ref c, ref c.Arch.NmiReason)), ("arch.p2m_cr3", Off(ref c, ref c.Arch.P2mCr3)),
            ("arch.p2m_vaddr", Off(ref c, ref c.Arch.P2mVaddr)), ("arch.p2m_generation", Off(ref c, ref c.Arch.P2mGeneration)),
            ("arch.wc_sec_hi", Off(ref c, ref c.Arch.WcSecHi)));
        Assert.Equal([XenAbiLayout.Value("xen/xen.h", "XEN_LEGACY_MAX_VCPUS"), XenAbiLayout.Value("xen/xen.h", "XEN_PVCLOCK_TSC_STABLE_BIT"), XenAbiLayout.Value("xen/xen.h", "XEN_PVCLOCK_GUEST_STOPPED")],
            new long[] { SharedInfo.LegacyMaxVcpus, VcpuTimeInfo.TscStableBit, VcpuTimeInfo.GuestStopped });
        Verify();
    }

    [Fact]
    public void Vcpu_op_structs()
    {
        var r = default(VcpuRegisterVcpuInfo);
        foreach (int bits in new[] { 64, 32 })
            Check("xen/vcpu.h", "struct vcpu_register_vcpu_info", Unsafe.SizeOf<VcpuRegisterVcpuInfo>(),
                [("mfn", Off(ref r, ref r.Mfn)), ("offset", Off(ref r, ref r.Offset)), ("rsvd", Off(ref r, ref r.Reserved))], bits);

        var a = default(VcpuRegisterRunstateMemoryArea);
        foreach (int bits in new[] { 64, 32 })
            Check("xen/vcpu.h", "struct vcpu_register_runstate_memory_area", Unsafe.SizeOf<VcpuRegisterRunstateMemoryArea>(),
                [("addr", Off(ref a, ref a.Addr)), ("addr.p", Off(ref a, ref a.Addr)), ("addr.v", Off(ref a, ref a.Addr))], bits);

        var s = default(VcpuRunstateInfo);
        Check64("xen/vcpu.h", "struct vcpu_runstate_info", Unsafe.SizeOf<VcpuRunstateInfo>(),
            ("state", Off(ref s, ref s.State)), ("state_entry_time", Off(ref s, ref s.StateEntryTime)),
            ("time", Off(ref s, ref s.Time)), ("time[3]", Off(ref s, ref s.Time[3])));
        var c = default(CompatVcpuRunstateInfo);
        Check32("xen/vcpu.h", "struct vcpu_runstate_info", Unsafe.SizeOf<CompatVcpuRunstateInfo>(),
            ("state", Off(ref c, ref c.State)), ("state_entry_time", Off(ref c, ref c.StateEntryTime)),
            ("time", Off(ref c, ref c.Time)), ("time[3]", Off(ref c, ref c.Time[3])));
        Verify();
    }
}
