using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Host;
using VmmKit.TestSupport;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;
using VmmKit.Devices;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// XEN_DOMCTL_gethvmcontext / sethvmcontext (src/Host/HvmContext.cs): the save records against Xen's headers, the
/// hostile streams hvm_load refuses with its errno, and libxc's PVH boot CPU record loaded and read back.
/// </summary>
public sealed class HvmContextTests
{
    private const ulong Stream = 256, Out = 2048;

    private sealed class Host : IDisposable
    {
        public readonly Machine Machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
        public readonly GuestBuffer Memory = new(16384);
        public readonly VirtualCpu Dom0;
        public readonly VirtualCpu Guest;
        public readonly Domain Target;

        public Host()
        {
            var dom0 = new Domain(Machine, 0, "Domain-0", 1, privileged: true, upcall: null);
            Machine.AddDomain(dom0);
            dom0.SetMaxPages(16);
            Assert.Equal(0, dom0.Populate(0));
            Assert.Equal(0, dom0.InitialiseBootVcpu(0x1000, 0));
            Dom0 = dom0.Vcpus[0];
            var guest = new Domain(Machine, 1, "guest", 1, privileged: false, upcall: null);
            Machine.AddDomain(guest);
            guest.SetMaxPages(16);
            Assert.Equal(0, guest.Populate(0));
            Assert.Equal(0, guest.InitialiseBootVcpu(0x1000, 0));
            Guest = guest.Vcpus[0];
            Target = new Domain(Machine, 2, "target", 1, privileged: false, upcall: null);
            Machine.AddDomain(Target);
        }

        public long Domctl(uint cmd, uint size, ulong buffer, VirtualCpu? caller = null, ushort domain = 2)
        {
            MemoryMarshal.Write(Memory.Bytes, new XenDomctl
            {
                Cmd = cmd, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domain, HvmContextSize = size, HvmContextBuffer = buffer,
            });
            var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Domctl, Rdi = 0 };
            Machine.Hypercalls.Dispatch(caller ?? Dom0, ref regs, GuestX86Mode.Long64, 0, Memory);
            return (long)regs.Rax;
        }

        public uint ReturnedSize => MemoryMarshal.Read<XenDomctl>(Memory.Bytes).HvmContextSize;

        public long Set(byte[] stream)
        {
            stream.CopyTo(Memory.Bytes, (int)Stream);
            return Domctl(ToolsAbi.DomctlSetHvmContext, (uint)stream.Length, Stream);
        }

        public void Dispose() => Machine.Dispose();
    }

    /// <summary>A stream of records: (typecode, instance, data).</summary>
    private static byte[] Records(params (ushort Code, ushort Instance, byte[] Data)[] records)
    {
        var bytes = new List<byte>();
        foreach (var (code, instance, data) in records)
        {
            var d = new HvmSaveDescriptor { TypeCode = code, Instance = instance, Length = (uint)data.Length };
            bytes.AddRange(MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref d, 1)).ToArray());
            bytes.AddRange(data);
        }

        return [.. bytes];
    }

    private static byte[] Bytes<T>(T value)
        where T : unmanaged => MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref value, 1)).ToArray();

    private static byte[] Header(uint magic = HvmSave.FileMagic) => Bytes(new HvmSaveHeader { Magic = magic, Version = HvmSave.FileVersion });

    /// <summary>The boot CPU record libxc's PVH builder writes (tools/libs/guest/xg_dom_x86.c <c>vcpu_hvm</c>).</summary>
    private static HvmHwCpu PvhBootCpu(ulong entry, ulong startInfo) => new()
    {
        CsLimit = ~0u, DsLimit = ~0u, EsLimit = ~0u, SsLimit = ~0u, TrLimit = 0x67,
        CsArbytes = 0xC9B, DsArbytes = 0xC93, EsArbytes = 0xC93, SsArbytes = 0xC93, TrArbytes = 0x8B,
        Cr0 = 0x11, Rip = entry, Rbx = startInfo, Dr6 = 0xFFFF0FF0, Dr7 = 0x400,
    };

    [Fact]
    public void Save_records_match_xen_hvm_save_h()
    {
        var v = XenAbiLayout.Evaluate(["xen/xen.h", "xen/domctl.h", "xen/hvm/save.h"],
        [
            "sizeof(struct hvm_save_descriptor)", "offsetof(struct hvm_save_descriptor, instance)", "offsetof(struct hvm_save_descriptor, length)",
            "sizeof(struct hvm_save_header)", "offsetof(struct hvm_save_header, changeset)", "offsetof(struct hvm_save_header, cpuid)",
            "offsetof(struct hvm_save_header, gtsc_khz)", "HVM_FILE_MAGIC", "HVM_FILE_VERSION",
            "HVM_SAVE_CODE(END)", "HVM_SAVE_CODE(HEADER)", "HVM_SAVE_CODE(CPU)", "HVM_SAVE_LENGTH(CPU)", "XEN_X86_FPU_INITIALISED",
            "offsetof(struct hvm_hw_cpu, rax)", "offsetof(struct hvm_hw_cpu, rsp)", "offsetof(struct hvm_hw_cpu, r15)", "offsetof(struct hvm_hw_cpu, rip)",
            "offsetof(struct hvm_hw_cpu, cr0)", "offsetof(struct hvm_hw_cpu, dr7)", "offsetof(struct hvm_hw_cpu, cs_sel)", "offsetof(struct hvm_hw_cpu, ldtr_sel)",
            "offsetof(struct hvm_hw_cpu, cs_limit)", "offsetof(struct hvm_hw_cpu, gdtr_limit)", "offsetof(struct hvm_hw_cpu, cs_base)",
            "offsetof(struct hvm_hw_cpu, gdtr_base)", "offsetof(struct hvm_hw_cpu, cs_arbytes)", "offsetof(struct hvm_hw_cpu, ldtr_arbytes)",
            "offsetof(struct hvm_hw_cpu, sysenter_cs)", "offsetof(struct hvm_hw_cpu, shadow_gs)", "offsetof(struct hvm_hw_cpu, msr_efer)",
            "offsetof(struct hvm_hw_cpu, tsc)", "offsetof(struct hvm_hw_cpu, pending_event)", "offsetof(struct hvm_hw_cpu, error_code)",
            "offsetof(struct hvm_hw_cpu, flags)", "offsetof(struct hvm_hw_cpu, pad0)",
            "XEN_DOMCTL_gethvmcontext", "XEN_DOMCTL_sethvmcontext", "offsetof(struct xen_domctl, u.hvmcontext.size)",
            "offsetof(struct xen_domctl, u.hvmcontext.buffer)",
        ], defines: ["__XEN_TOOLS__"]);
        Assert.Equal(
            new long[]
            {
                Unsafe.SizeOf<HvmSaveDescriptor>(), Marshal.OffsetOf<HvmSaveDescriptor>("Instance"), Marshal.OffsetOf<HvmSaveDescriptor>("Length"),
                Unsafe.SizeOf<HvmSaveHeader>(), Marshal.OffsetOf<HvmSaveHeader>("Changeset"), Marshal.OffsetOf<HvmSaveHeader>("Cpuid"),
                Marshal.OffsetOf<HvmSaveHeader>("GtscKhz"), HvmSave.FileMagic, HvmSave.FileVersion,
                HvmSave.CodeEnd, HvmSave.CodeHeader, HvmSave.CodeCpu, Unsafe.SizeOf<HvmHwCpu>(), HvmSave.FpuInitialised,
                Off("Rax"), Off("Rsp"), Off("R15"), Off("Rip"), Off("Cr0"), Off("Dr7"), Off("CsSel"), Off("LdtrSel"), Off("CsLimit"), Off("GdtrLimit"),
                Off("CsBase"), Off("GdtrBase"), Off("CsArbytes"), Off("LdtrArbytes"), Off("SysenterCs"), Off("ShadowGs"), Off("MsrEfer"), Off("Tsc"),
                Off("PendingEvent"), Off("ErrorCode"), Off("Flags"), Off("Pad0"),
                ToolsAbi.DomctlGetHvmContext, ToolsAbi.DomctlSetHvmContext, Marshal.OffsetOf<XenDomctl>("HvmContextSize"),
                Marshal.OffsetOf<XenDomctl>("HvmContextBuffer"),
            },
            v);
    }

    private static long Off(string field) => Marshal.OffsetOf<HvmHwCpu>(field);

    /// <summary>Bytes of one vCPU's LAPIC, LAPIC_REGS and MTRR records with their descriptors.</summary>
    private const uint PerVcpu = (8 + 24) + (8 + 1024) + (8 + 240);

    [Fact]
    public void Lapic_and_mtrr_records_match_xen_hvm_save_h()
    {
        var v = XenAbiLayout.Evaluate(["xen/xen.h", "xen/hvm/save.h"],
        [
            "HVM_SAVE_CODE(LAPIC)", "HVM_SAVE_LENGTH(LAPIC)", "offsetof(struct hvm_hw_lapic, disabled)", "offsetof(struct hvm_hw_lapic, timer_divisor)",
            "offsetof(struct hvm_hw_lapic, tdt_msr)", "HVM_SAVE_CODE(LAPIC_REGS)", "HVM_SAVE_LENGTH(LAPIC_REGS)",
            "HVM_SAVE_CODE(MTRR)", "HVM_SAVE_LENGTH(MTRR)", "MTRR_VCNT", "NUM_FIXED_MSR", "offsetof(struct hvm_hw_mtrr, msr_mtrr_var)",
            "offsetof(struct hvm_hw_mtrr, msr_mtrr_fixed)", "offsetof(struct hvm_hw_mtrr, msr_mtrr_cap)", "offsetof(struct hvm_hw_mtrr, msr_mtrr_def_type)",
        ], defines: ["__XEN_TOOLS__"]);
        Assert.Equal(
            new long[]
            {
                HvmSave.CodeLapic, Unsafe.SizeOf<HvmHwLapic>(), Marshal.OffsetOf<HvmHwLapic>("Disabled"), Marshal.OffsetOf<HvmHwLapic>("TimerDivisor"),
                Marshal.OffsetOf<HvmHwLapic>("TdtMsr"), HvmSave.CodeLapicRegs, Unsafe.SizeOf<HvmHwLapicRegs>(),
                HvmSave.CodeMtrr, Unsafe.SizeOf<HvmHwMtrr>(), HvmSave.MtrrVcnt, HvmSave.MtrrFixed, Marshal.OffsetOf<HvmHwMtrr>("MsrMtrrVar"),
                Marshal.OffsetOf<HvmHwMtrr>("MsrMtrrFixed"), Marshal.OffsetOf<HvmHwMtrr>("MsrMtrrCap"), Marshal.OffsetOf<HvmHwMtrr>("MsrMtrrDefType"),
            },
            v);
    }

    private static void WriteApic(VirtualCpu vcpu, int offset, uint value) =>
        vcpu.Apic.Write(LocalApic.DefaultBaseAddress, (ulong)offset, BitConverter.GetBytes(value));

    private static uint ReadApic(VirtualCpu vcpu, int offset)
    {
        var bytes = new byte[4];
        vcpu.Apic.Read(LocalApic.DefaultBaseAddress, (ulong)offset, bytes);
        return BitConverter.ToUInt32(bytes);
    }

    private byte[] Saved(Host h)
    {
        Assert.Equal(0, h.Domctl(ToolsAbi.DomctlGetHvmContext, 8000, Out));
        return h.Memory.Bytes.AsSpan((int)Out, (int)h.ReturnedSize).ToArray();
    }

    [Fact]
    public void Get_set_get_keeps_the_lapic_timer_and_the_mtrrs()
    {
        using var h = new Host();
        Assert.Equal(0, h.Set(Records((HvmSave.CodeHeader, 0, Header()), (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0x2000))), (0, 0, []))));
        var vcpu = h.Target.Vcpus[0];
        WriteApic(vcpu, 0xF0, 0x1FF);                  // SVR: software enabled, spurious vector 0xFF
        WriteApic(vcpu, 0x80, 0x20);                   // TPR
        WriteApic(vcpu, 0x3E0, 0x3);                   // divide by 16
        WriteApic(vcpu, 0x320, 0x2_0040);              // LVT timer: periodic, vector 0x40
        WriteApic(vcpu, 0x380, 100_000);               // initial count: the timer runs
        Assert.True(MtrrMsrs.TryWrite(vcpu, MtrrMsrs.PhysBase0, 0x8000_0000 | 6));
        Assert.True(MtrrMsrs.TryWrite(vcpu, MtrrMsrs.PhysBase0 + 1, 0xF_C000_0800));
        Assert.True(MtrrMsrs.TryWrite(vcpu, MtrrMsrs.Fix64K, 0x0606_0606_0606_0606));
        Assert.True(MtrrMsrs.TryWrite(vcpu, MtrrMsrs.DefType, 0xC00));
        var first = Saved(h);

        // Into a fresh domain: the state arrives whole.
        using var other = new Host();
        first.CopyTo(other.Memory.Bytes, (int)Stream);
        Assert.Equal(0, other.Domctl(ToolsAbi.DomctlSetHvmContext, (uint)first.Length, Stream));
        var copy = other.Target.Vcpus[0];
        Assert.Equal((0x1FFu, 0x20u, 0x3u, 0x2_0040u, 100_000u), (ReadApic(copy, 0xF0), ReadApic(copy, 0x80), ReadApic(copy, 0x3E0), ReadApic(copy, 0x320), ReadApic(copy, 0x380)));
        Assert.Equal(LocalApicTimerMode.Periodic, copy.Apic.TimerMode);
        Assert.NotNull(copy.Apic.NextTimerExpiry);     // the timer was re-armed (lapic_rearm)
        Assert.Equal((0x8000_0006ul, 0xF_C000_0800ul, 0x0606_0606_0606_0606ul, 0xC00ul),
            (MtrrMsrs.Read(copy, MtrrMsrs.PhysBase0), MtrrMsrs.Read(copy, MtrrMsrs.PhysBase0 + 1), MtrrMsrs.Read(copy, MtrrMsrs.Fix64K), MtrrMsrs.Read(copy, MtrrMsrs.DefType)));
        Assert.Equal(first, Saved(other));

        // And back onto itself: get -> set -> get is the identity.
        Assert.Equal(0, h.Set(first));
        Assert.Equal(first, Saved(h));
    }

    [Fact]
    public unsafe void Libxcs_pvh_builder_flow_sets_cpu_and_mtrr()
    {
        // xg_dom_x86.c vcpu_hvm: get the full context, take its header and vCPU 0's MTRR record, set HEADER, CPU, MTRR
        // (default type WB, enabled) and END.
        using var h = new Host();
        var full = Saved(h);
        int pos = 32;
        HvmHwMtrr mtrr = default;
        while (true)
        {
            var d = MemoryMarshal.Read<HvmSaveDescriptor>(full.AsSpan(pos));
            Assert.NotEqual(HvmSave.CodeEnd, d.TypeCode);
            if (d.TypeCode == HvmSave.CodeMtrr && d.Instance == 0)
            {
                mtrr = MemoryMarshal.Read<HvmHwMtrr>(full.AsSpan(pos + 8));
                break;
            }

            pos += 8 + (int)d.Length;
        }

        Assert.Equal(0x508ul, mtrr.MsrMtrrCap);        // 8 variable ranges, fixed ranges, WC
        mtrr.MsrMtrrDefType = 6 | (1ul << 11);
        mtrr.MsrMtrrFixed[0] = 0x0505_0505_0505_0505;
        Assert.Equal(0, h.Set(Records((HvmSave.CodeHeader, 0, full[8..32]), (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0x2000))),
            (HvmSave.CodeMtrr, 0, Bytes(mtrr)), (0, 0, []))));
        var vcpu = h.Target.Vcpus[0];
        Assert.True(vcpu.IsUp);
        Assert.Equal((0x806ul, 0x0505_0505_0505_0505ul), (MtrrMsrs.Read(vcpu, MtrrMsrs.DefType), MtrrMsrs.Read(vcpu, MtrrMsrs.Fix64K)));
    }

    [Fact]
    public unsafe void Hostile_lapic_and_mtrr_records_get_hvm_loads_errno()
    {
        using var h = new Host();
        var header = (HvmSave.CodeHeader, (ushort)0, Header());
        var end = ((ushort)0, (ushort)0, Array.Empty<byte>());
        var regs = new byte[1024];
        var lapic = Bytes(new HvmHwLapic { ApicBaseMsr = LocalApic.DefaultBaseAddress | LocalApic.ApicBaseEnable | LocalApic.ApicBaseBsp });
        var mtrr = new HvmHwMtrr { MsrMtrrCap = 0x508, MsrMtrrDefType = 0xC06 };
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeLapicRegs, 0, regs[..1000]), end)));           // truncated record
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeLapicRegs, 0, [.. regs, 0]), end)));           // too long
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeLapic, 0, [.. lapic, 0, 0, 0, 0, 0, 0, 0, 0]), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeMtrr, 1, Bytes(mtrr)), end)));                 // no vCPU 1
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeLapic, 7, lapic), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeMtrr, 0, Bytes(mtrr with { MsrMtrrCap = 9 })), end)));   // VCNT > MTRR_VCNT
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeLapic, 0, Bytes(new HvmHwLapic { ApicBaseMsr = LocalApic.DefaultBaseAddress | LocalApic.ApicBaseExtd })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeLapic, 0, Bytes(new HvmHwLapic { ApicBaseMsr = 1ul << 63 })), end)));   // reserved bit
        Assert.Equal(XenErrno.ENODATA.Negated(), h.Set(Records(header, (HvmSave.CodeLapicRegs, 0, regs))[..600]));                  // the stream ends inside it

        // Bad memory types are skipped as Xen's mtrr_*_msr_set skip them; the record itself loads.
        mtrr.MsrMtrrFixed[0] = 0x0202_0202_0202_0202;
        Assert.Equal(0, h.Set(Records(header, (HvmSave.CodeMtrr, 0, Bytes(mtrr)), end)));
        Assert.Equal((0xC06ul, 0ul), (MtrrMsrs.Read(h.Target.Vcpus[0], MtrrMsrs.DefType), MtrrMsrs.Read(h.Target.Vcpus[0], MtrrMsrs.Fix64K)));

        // A short LAPIC record is zero-extended (hvm_load_entry_zeroextend).
        Assert.Equal(0, h.Set(Records(header, (HvmSave.CodeLapic, 0, lapic[..8]), end)));
    }

    [Fact]
    public void An_unprivileged_caller_or_the_domain_itself_is_refused()
    {
        using var h = new Host();
        Assert.Equal(XenErrno.EPERM.Negated(), h.Domctl(ToolsAbi.DomctlGetHvmContext, 0, 0, h.Guest));
        Assert.Equal(XenErrno.EPERM.Negated(), h.Domctl(ToolsAbi.DomctlSetHvmContext, 0, Stream, h.Guest));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Domctl(ToolsAbi.DomctlGetHvmContext, 0, 0, domain: 0));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Domctl(ToolsAbi.DomctlSetHvmContext, 0, Stream, domain: 0));
        Assert.Equal(XenErrno.ESRCH.Negated(), h.Domctl(ToolsAbi.DomctlGetHvmContext, 0, 0, domain: 9));
        Assert.Empty(h.Target.Vcpus);
    }

    [Fact]
    public void Get_with_a_null_buffer_returns_the_size_and_a_small_buffer_is_ENOSPC()
    {
        using var h = new Host();
        Assert.Equal(0, h.Domctl(ToolsAbi.DomctlGetHvmContext, 0, 0));
        Assert.Equal(40u + PerVcpu, h.ReturnedSize);       // HEADER, the LAPIC, LAPIC_REGS and MTRR of its (down) vCPU, END
        Assert.Equal(0, h.Set(Records((HvmSave.CodeHeader, 0, Header()), (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0x2000))), (0, 0, []))));
        Assert.Equal(0, h.Domctl(ToolsAbi.DomctlGetHvmContext, 0, 0));
        uint size = h.ReturnedSize;
        Assert.Equal(40u + 8 + 1032 + PerVcpu, size);
        Assert.Equal(XenErrno.ENOSPC.Negated(), h.Domctl(ToolsAbi.DomctlGetHvmContext, size - 1, Out));
        Assert.Equal(XenErrno.EFAULT.Negated(), h.Domctl(ToolsAbi.DomctlGetHvmContext, size, 16000));
    }

    [Fact]
    public void Hostile_streams_get_hvm_loads_errno()
    {
        using var h = new Host();
        var header = (HvmSave.CodeHeader, (ushort)0, Header());
        var end = ((ushort)0, (ushort)0, Array.Empty<byte>());
        var cpu = Bytes(PvhBootCpu(0x10_0000, 0));
        Assert.Equal(XenErrno.ENODATA.Negated(), h.Set(Records(header)[..20]));                                   // truncated header
        Assert.Equal(XenErrno.ENODATA.Negated(), h.Set(Records((HvmSave.CodeCpu, 0, cpu), end)));                 // no header first
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records((HvmSave.CodeHeader, 0, Header(0x1234)), end)));   // bad magic
        Assert.Equal(XenErrno.ENODATA.Negated(), h.Set(Records(header)));                                         // no END
        Assert.Equal(XenErrno.ENODATA.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, cpu))[..600]));      // record cut short
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 1, cpu), end)));         // no vCPU 1
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, [.. cpu, 0, 0, 0, 0]), end)));   // too long
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeMtrr, 0, new byte[8]), end)));   // MTRR of the wrong length
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (3, 0, new byte[8]), end)));                // PIC: not supported
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0) with { Cr0 = 1 })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0) with { Cr0 = 0x8000_0010 })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0) with { Pad0 = 1 })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0) with { Cr4 = 1ul << 13 })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0) with { Cr4 = 1ul << 6 })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0) with { MsrEfer = 1ul << 12 })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0) with { SsArbytes = 0xC9B })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0) with { GdtrLimit = 0x10000 })), end)));
        Assert.Equal(XenErrno.EINVAL.Negated(), h.Set(Records(header, (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x1_0000_0000, 0))), end)));
        Assert.Equal(XenErrno.ENOMEM.Negated(), h.Domctl(ToolsAbi.DomctlSetHvmContext, 1u << 20, Stream));
        Assert.Equal(XenErrno.EFAULT.Negated(), h.Domctl(ToolsAbi.DomctlSetHvmContext, 16384, Stream));
        Assert.All(h.Target.Vcpus, v => Assert.False(v.IsUp));                                                    // none runs from a refused record
        Assert.Equal(0, h.Set(Records(header, end)));                                                             // header and END only
    }

    [Fact]
    public void Libxcs_pvh_boot_record_starts_the_vcpu_and_reads_back()
    {
        using var h = new Host();
        var boot = PvhBootCpu(0x10_0040, 0x2000) with { Rsi = 7, R9 = 9, FsBase = 0x5000, FsArbytes = 0xC93, FsLimit = ~0u };
        Assert.Equal(0, h.Set(Records((HvmSave.CodeHeader, 0, Header()), (HvmSave.CodeCpu, 0, Bytes(boot)), (0, 0, []))));
        var vcpu = Assert.Single(h.Target.Vcpus);
        Assert.True(vcpu.IsUp && vcpu.IsInitialised);
        Assert.Equal(0x10_0040ul, vcpu.Vmcs.Read(VmcsField.GuestRip));
        Assert.Equal((0x2000ul, 7ul, 9ul), (vcpu.Registers.Rbx, vcpu.Registers.Rsi, vcpu.Registers.R9));
        Assert.Equal(0x5000ul, vcpu.Vmcs.Read(VmcsField.GuestFsBase));

        Assert.Equal(0, h.Domctl(ToolsAbi.DomctlGetHvmContext, 8000, Out));
        var bytes = h.Memory.Bytes.AsSpan((int)Out, (int)h.ReturnedSize);
        var d = MemoryMarshal.Read<HvmSaveDescriptor>(bytes);
        var hdr = MemoryMarshal.Read<HvmSaveHeader>(bytes[8..]);
        Assert.Equal((HvmSave.CodeHeader, 24u, HvmSave.FileMagic, HvmSave.FileVersion), (d.TypeCode, d.Length, hdr.Magic, hdr.Version));
        d = MemoryMarshal.Read<HvmSaveDescriptor>(bytes[32..]);
        Assert.Equal((HvmSave.CodeCpu, (ushort)0, 1032u), (d.TypeCode, d.Instance, d.Length));
        var cpu = MemoryMarshal.Read<HvmHwCpu>(bytes[40..]);
        Assert.Equal((0x10_0040ul, 0x2000ul, 0x11ul, 0xC9Bu, 0xC93u, 0x8Bu, ~0u, 0x5000ul),
            (cpu.Rip, cpu.Rbx, cpu.Cr0, cpu.CsArbytes, cpu.SsArbytes, cpu.TrArbytes, cpu.CsLimit, cpu.FsBase));
        Assert.Equal((HvmSave.CodeLapic, 24u), (MemoryMarshal.Read<HvmSaveDescriptor>(bytes[(40 + 1032)..]).TypeCode, MemoryMarshal.Read<HvmSaveDescriptor>(bytes[(40 + 1032)..]).Length));
        Assert.Equal(HvmSave.CodeEnd, MemoryMarshal.Read<HvmSaveDescriptor>(bytes[^8..]).TypeCode);

        // The saved stream loads back unchanged (Xen's save/restore round trip).
        Assert.Equal(0, h.Set(bytes.ToArray()));
        Assert.Equal(0x10_0040ul, vcpu.Vmcs.Read(VmcsField.GuestRip));
    }

    [Fact]
    public void The_vcpu_runs_from_the_record_and_reads_a_removed_gfn_as_unpopulated()
    {
        using var h = new Host();
        var d = h.Target;
        d.SetMaxPages(8);
        Assert.Equal(0, d.Populate(0x100));
        Assert.Equal(0, d.Populate(0x101));
        byte[] code =
        [
            0x89, 0x1D, 0x00, 0x08, 0x10, 0x00,     // mov [0x100800], ebx
            0xA1, 0x00, 0x10, 0x10, 0x00,           // mov eax, [0x101000]
            0xA3, 0x04, 0x08, 0x10, 0x00,           // mov [0x100804], eax
            0xFA, 0xF4,                             // cli; hlt: the last vCPU down powers the domain off
        ];
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(0x10_0000), code, out _));
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(0x10_1000), 0x1234u));

        // Dom0 takes gfn 0x101 away (XENMEM_remove_from_physmap naming the domain), then loads the boot record.
        MemoryMarshal.Write(h.Memory.Bytes, new XenRemoveFromPhysmap { Domid = 2, Gpfn = 0x101 });
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.MemoryOp, Rdi = XenRemoveFromPhysmap.SubOp, Rsi = 0 };
        h.Machine.Hypercalls.Dispatch(h.Dom0, ref regs, GuestX86Mode.Long64, 0, h.Memory);
        Assert.Equal(0ul, regs.Rax);
        Assert.Equal(0, h.Set(Records((HvmSave.CodeHeader, 0, Header()), (HvmSave.CodeCpu, 0, Bytes(PvhBootCpu(0x10_0000, 0xCAFE))), (0, 0, []))));

        d.PauseCount = 0;
        for (int i = 0; i < 100 && d.State is not (DomainState.Shutdown or DomainState.Crashed); i++)
            d.Vcpus[0].RunSlice();
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.True(d.Physical.TryRead(new GuestPhysicalAddress(0x10_0800), out uint rbx));
        Assert.True(d.Physical.TryRead(new GuestPhysicalAddress(0x10_0804), out uint read));
        Assert.Equal(0xCAFEu, rbx);
        Assert.Equal(0xFFFF_FFFFu, read);           // Xen's null MMIO handler: an unpopulated gfn reads as all ones
    }
}
