using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// The HVM context of XEN_DOMCTL_gethvmcontext / sethvmcontext (xen/arch/x86/hvm/save.c <c>hvm_save</c>, <c>hvm_load</c>;
/// hvm.c <c>hvm_save_cpu_ctxt</c>, <c>hvm_load_cpu_ctxt</c>; vlapic.c <c>lapic_save_*</c>, <c>lapic_load_hidden</c>,
/// <c>lapic_load_regs</c>; mtrr.c <c>hvm_save_mtrr_msr</c>, <c>hvm_load_mtrr_msr</c>): the records HEADER, CPU for each
/// vCPU that is up, LAPIC, LAPIC_REGS and MTRR for every vCPU, END, in Xen's order (by type code, then vCPU). Saved CPU
/// state: general registers, RIP, RFLAGS, CR0/CR3/CR4, EFER, DR7, the segment registers and descriptor tables, SYSENTER
/// MSRs; the FXSAVE image, CR2, DR0-3/DR6, the SYSCALL MSRs, shadow GS, TSC and a pending event are not kept per vCPU
/// here and save as 0 (flags without XEN_X86_FPU_INITIALISED), and a load ignores them.
/// </summary>
internal static class HvmContext
{
    private static int DescriptorSize => Unsafe.SizeOf<HvmSaveDescriptor>();
    private static int HeaderSize => Unsafe.SizeOf<HvmSaveHeader>();
    private static int CpuSize => Unsafe.SizeOf<HvmHwCpu>();
    private static int LapicSize => Unsafe.SizeOf<HvmHwLapic>();
    private static int LapicRegsSize => Unsafe.SizeOf<HvmHwLapicRegs>();
    private static int MtrrSize => Unsafe.SizeOf<HvmHwMtrr>();

    /// <summary>IA32_TSC_DEADLINE of a LAPIC record, applied when the vCPU's LAPIC_REGS put its timer in TSC-deadline mode (Xen's <c>lapic_rearm</c>).</summary>
    private static readonly ConditionalWeakTable<VirtualCpu, StrongBox<ulong>> LoadedDeadlines = new();

    /// <summary>The size <see cref="Save"/> writes for <paramref name="domain"/> (Xen's <c>hvm_save_size</c>).</summary>
    public static int SaveSize(Domain domain)
    {
        int up = 0;
        foreach (var v in domain.Vcpus)
            up += v.IsUp ? 1 : 0;
        int perVcpu = (3 * DescriptorSize) + LapicSize + LapicRegsSize + MtrrSize;
        return DescriptorSize + HeaderSize + (up * (DescriptorSize + CpuSize)) + (domain.Vcpus.Count * perVcpu) + DescriptorSize;
    }

    /// <summary>Writes the domain's stream into <paramref name="buffer"/> (at least <see cref="SaveSize"/> bytes); returns its length.</summary>
    public static int Save(Domain domain, Span<byte> buffer)
    {
        int pos = 0;
        Put(buffer, ref pos, new HvmSaveDescriptor { TypeCode = HvmSave.CodeHeader, Length = (uint)HeaderSize });
        Put(buffer, ref pos, new HvmSaveHeader
        {
            Magic = HvmSave.FileMagic,
            Version = HvmSave.FileVersion,
            Cpuid = EmulatedFeatures.Signature,
            GtscKhz = (uint)(EmulatedProcessor.TscFrequencyHz / 1000),
        });

        // "We don't need to save state for a vcpu that is down; the restore code will leave it down" (hvm_save_cpu_ctxt).
        foreach (var vcpu in domain.Vcpus)
        {
            if (!vcpu.IsUp)
                continue;
            Put(buffer, ref pos, new HvmSaveDescriptor { TypeCode = HvmSave.CodeCpu, Instance = (ushort)vcpu.Id, Length = (uint)CpuSize });
            Put(buffer, ref pos, SaveCpu(vcpu));
        }

        foreach (var vcpu in domain.Vcpus)
        {
            Put(buffer, ref pos, new HvmSaveDescriptor { TypeCode = HvmSave.CodeLapic, Instance = (ushort)vcpu.Id, Length = (uint)LapicSize });
            Put(buffer, ref pos, HvmVcpuRecords.SaveLapic(vcpu));
        }

        foreach (var vcpu in domain.Vcpus)
        {
            Put(buffer, ref pos, new HvmSaveDescriptor { TypeCode = HvmSave.CodeLapicRegs, Instance = (ushort)vcpu.Id, Length = (uint)LapicRegsSize });
            vcpu.Apic.SaveRegisterPage(buffer.Slice(pos, LapicRegsSize));
            pos += LapicRegsSize;
        }

        foreach (var vcpu in domain.Vcpus)
        {
            Put(buffer, ref pos, new HvmSaveDescriptor { TypeCode = HvmSave.CodeMtrr, Instance = (ushort)vcpu.Id, Length = (uint)MtrrSize });
            Put(buffer, ref pos, HvmVcpuRecords.SaveMtrr(vcpu));
        }

        Put(buffer, ref pos, new HvmSaveDescriptor { TypeCode = HvmSave.CodeEnd });
        return pos;
    }

    /// <summary>
    /// Loads a stream as Xen's <c>hvm_load</c>: a missing or short HEADER is -ENODATA, a wrong magic or version -EINVAL;
    /// then records until END (running out of data first is -ENODATA, and so is a record running past the stream). A
    /// type code other than CPU, LAPIC, LAPIC_REGS and MTRR is -EINVAL (Xen's "unknown entry typecode" for the ones it
    /// does not know; the others it knows are not supported here), and so is a record for a vCPU the domain does not
    /// have. CPU and LAPIC records may be shorter than their struct (zero-extended, <c>hvm_load_entry_zeroextend</c>),
    /// not longer; LAPIC_REGS and MTRR must have their exact length (<c>hvm_load_entry</c>); all -EINVAL otherwise.
    /// A CPU record with state Xen refuses is -EINVAL; the rules of the others are in <see cref="HvmVcpuRecords"/>.
    /// After the HEADER every vCPU is down (a domain built by the toolstack gets its vCPUs here, as Xen's have them from
    /// createdomain); each CPU record brings its vCPU up, initialised. Records are applied in order, as Xen does: an error
    /// leaves the earlier ones loaded.
    /// </summary>
    public static long Load(Domain domain, ReadOnlySpan<byte> stream)
    {
        int pos = 0;
        if (!TryTake(stream, ref pos, out HvmSaveDescriptor d) || d.TypeCode != HvmSave.CodeHeader || d.Length != HeaderSize
            || !TryTake(stream, ref pos, out HvmSaveHeader header))
            return XenErrno.ENODATA.Negated();
        if (header.Magic != HvmSave.FileMagic || header.Version != HvmSave.FileVersion)
            return XenErrno.EINVAL.Negated();

        if (domain.Vcpus.Count == 0)
        {
            long created = domain.InitialiseBootVcpu(0, 0);
            if (created != 0)
                return created;
        }

        // "Down all the vcpus: we only re-enable the ones that had state saved" (the toolstack has the domain paused).
        foreach (var v in domain.Vcpus)
            v.IsUp = false;
        domain.UpdateBlockedState();
        while (true)
        {
            if (!TryTake(stream, ref pos, out d))
                return XenErrno.ENODATA.Negated();          // "save did not end with a null entry"
            if (d.TypeCode == HvmSave.CodeEnd)
                return 0;
            int size = d.TypeCode switch
            {
                HvmSave.CodeCpu => CpuSize,
                HvmSave.CodeLapic => LapicSize,
                HvmSave.CodeLapicRegs => LapicRegsSize,
                HvmSave.CodeMtrr => MtrrSize,
                _ => -1,
            };
            bool zeroExtend = d.TypeCode is HvmSave.CodeCpu or HvmSave.CodeLapic;
            if (size < 0 || d.Instance >= domain.Vcpus.Count || d.Length > size || (!zeroExtend && d.Length != size))
                return XenErrno.EINVAL.Negated();
            if ((uint)(stream.Length - pos) < d.Length)
                return XenErrno.ENODATA.Negated();
            var data = stream.Slice(pos, (int)d.Length);
            pos += (int)d.Length;
            var vcpu = domain.Vcpus[d.Instance];
            long rc = d.TypeCode switch
            {
                HvmSave.CodeCpu => LoadCpuRecord(vcpu, data),
                HvmSave.CodeLapic => HvmVcpuRecords.LoadLapic(vcpu, ZeroExtended<HvmHwLapic>(data), LoadedDeadlines),
                HvmSave.CodeLapicRegs => HvmVcpuRecords.LoadLapicRegs(vcpu, data, LoadedDeadlines),
                _ => HvmVcpuRecords.LoadMtrr(vcpu, MemoryMarshal.Read<HvmHwMtrr>(data)),
            };
            if (rc != 0)
                return rc;
        }
    }

    private static T ZeroExtended<T>(ReadOnlySpan<byte> data)
        where T : unmanaged
    {
        T value = default;
        data.CopyTo(MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1)));
        return value;
    }

    private static long LoadCpuRecord(VirtualCpu vcpu, ReadOnlySpan<byte> data)
    {
        var cpu = ZeroExtended<HvmHwCpu>(data);
        return IsValid(in cpu, out var context) ? LoadCpu(vcpu, in cpu, in context) : XenErrno.EINVAL.Negated();
    }

    private const ulong Cr0Pe = 1, Cr0Et = 1ul << 4, Cr0Pg = 1ul << 31;

    /// <summary>CR0 bits a guest may hold (Xen's HVM_CR0_GUEST_RESERVED_BITS is the complement): PE MP EM TS ET NE WP AM NW CD PG.</summary>
    private const ulong Cr0Allowed = 0x8005_003F | (1ul << 29) | (1ul << 30);

    private const ulong EferLme = 1ul << 8;

    /// <summary>
    /// <c>hvm_load_cpu_ctxt</c>'s checks: pad0 0, only XEN_X86_FPU_INITIALISED in flags, CR0 without reserved bits, with ET,
    /// never PG without PE; attributes saved in the old VMCS layout are unfolded; the rest (CR4, EFER, the segments) is
    /// checked by <see cref="VcpuHvmContextLoader"/> with <c>arch_set_info_hvm_guest</c>'s rules. A 64-bit code segment with
    /// EFER.LME loads as Xen's flat 64-bit state; otherwise RIP, RSP and the segment bases must fit 32 bits.
    /// </summary>
    private static bool IsValid(in HvmHwCpu c, out VcpuHvmContext context)
    {
        context = default;
        if (c.Pad0 != 0 || (c.Flags & ~HvmSave.FpuInitialised) != 0)
            return false;
        if ((c.Cr0 & ~Cr0Allowed) != 0 || (c.Cr0 & Cr0Et) == 0 || (c.Cr0 & (Cr0Pe | Cr0Pg)) == Cr0Pg)
            return false;
        if ((c.GdtrLimit | c.IdtrLimit) > 0xFFFF || !Canonical(c.GdtrBase) || !Canonical(c.IdtrBase)
            || !Canonical(c.FsBase) || !Canonical(c.GsBase) || !Canonical(c.SysenterEsp) || !Canonical(c.SysenterEip))
            return false;
        if (!VcpuHvmContextLoader.TryConvertData(Unfold(c.FsArbytes), out uint fs) || !LimitFits(c.FsLimit, fs)
            || !VcpuHvmContextLoader.TryConvertData(Unfold(c.GsArbytes), out uint gs) || !LimitFits(c.GsLimit, gs))
            return false;

        bool longCode = (c.MsrEfer & EferLme) != 0 && (Unfold(c.CsArbytes) & 0x200) != 0;
        if (longCode)
        {
            context.Mode = VcpuHvmContext.Mode64;
            context.X86_64 = new VcpuHvmX86_64
            {
                Rax = c.Rax, Rcx = c.Rcx, Rdx = c.Rdx, Rbx = c.Rbx, Rsp = c.Rsp, Rbp = c.Rbp, Rsi = c.Rsi, Rdi = c.Rdi,
                Rip = c.Rip, Rflags = c.Rflags, Cr0 = c.Cr0, Cr3 = c.Cr3, Cr4 = c.Cr4, Efer = c.MsrEfer,
            };
            return true;
        }

        if ((c.Rip | c.Rsp | c.CsBase | c.DsBase | c.SsBase | c.EsBase | c.TrBase | c.Cr3 | c.Cr4) > uint.MaxValue || c.Rflags > uint.MaxValue)
            return false;
        context.Mode = VcpuHvmContext.Mode32;
        context.X86_32 = new VcpuHvmX86_32
        {
            Eax = (uint)c.Rax, Ecx = (uint)c.Rcx, Edx = (uint)c.Rdx, Ebx = (uint)c.Rbx, Esp = (uint)c.Rsp, Ebp = (uint)c.Rbp,
            Esi = (uint)c.Rsi, Edi = (uint)c.Rdi, Eip = (uint)c.Rip, Eflags = (uint)c.Rflags,
            Cr0 = (uint)c.Cr0, Cr3 = (uint)c.Cr3, Cr4 = (uint)c.Cr4, Efer = c.MsrEfer,
            CsBase = (uint)c.CsBase, DsBase = (uint)c.DsBase, SsBase = (uint)c.SsBase, EsBase = (uint)c.EsBase, TrBase = (uint)c.TrBase,
            CsLimit = GranularLimit(c.CsLimit, c.CsArbytes), DsLimit = GranularLimit(c.DsLimit, c.DsArbytes),
            SsLimit = GranularLimit(c.SsLimit, c.SsArbytes), EsLimit = GranularLimit(c.EsLimit, c.EsArbytes),
            TrLimit = GranularLimit(c.TrLimit, c.TrArbytes),
            CsAr = Unfold(c.CsArbytes), DsAr = Unfold(c.DsArbytes), SsAr = Unfold(c.SsArbytes), EsAr = Unfold(c.EsArbytes), TrAr = Unfold(c.TrArbytes),
        };
        return true;
    }

    /// <summary>Loads a checked record: the vcpu_hvm part through the loader, then what it does not carry.</summary>
    private static long LoadCpu(VirtualCpu vcpu, in HvmHwCpu c, in VcpuHvmContext context)
    {
        long rc = VcpuHvmContextLoader.Load(vcpu, in context);
        if (rc != 0)
            return rc;
        var vmcs = vcpu.Vmcs;
        ref var g = ref vcpu.Registers;
        (g.R8, g.R9, g.R10, g.R11, g.R12, g.R13, g.R14, g.R15) = (c.R8, c.R9, c.R10, c.R11, c.R12, c.R13, c.R14, c.R15);
        vmcs.Write(VmcsField.GuestRsp, c.Rsp);
        if (context.Mode == VcpuHvmContext.Mode32)
        {
            // Selectors, and FS/GS as saved (the vcpu_hvm state has neither).
            vmcs.Write(VmcsField.GuestEsSelector + (uint)(2 * Es), (ushort)c.EsSel);
            vmcs.Write(VmcsField.GuestEsSelector + (uint)(2 * Cs), (ushort)c.CsSel);
            vmcs.Write(VmcsField.GuestEsSelector + (uint)(2 * Ss), (ushort)c.SsSel);
            vmcs.Write(VmcsField.GuestEsSelector + (uint)(2 * Ds), (ushort)c.DsSel);
            vmcs.Write(VmcsField.GuestEsSelector + (uint)(2 * Tr), (ushort)c.TrSel);
        }

        VcpuHvmContextLoader.TryConvertData(Unfold(c.FsArbytes), out uint fs);
        VcpuHvmContextLoader.TryConvertData(Unfold(c.GsArbytes), out uint gs);
        VcpuLifecycle.Segment(vmcs, Fs, (ushort)c.FsSel, c.FsBase, c.FsLimit, fs);
        VcpuLifecycle.Segment(vmcs, Gs, (ushort)c.GsSel, c.GsBase, c.GsLimit, gs);
        vmcs.Write(VmcsField.GuestGdtrBase, c.GdtrBase);
        vmcs.Write(VmcsField.GuestGdtrLimit, c.GdtrLimit);
        vmcs.Write(VmcsField.GuestIdtrBase, c.IdtrBase);
        vmcs.Write(VmcsField.GuestIdtrLimit, c.IdtrLimit);
        vmcs.Write(VmcsField.GuestIa32SysenterCs, (uint)c.SysenterCs);
        vmcs.Write(VmcsField.GuestIa32SysenterEsp, c.SysenterEsp);
        vmcs.Write(VmcsField.GuestIa32SysenterEip, c.SysenterEip);
        vmcs.Write(VmcsField.GuestDr7, (c.Dr7 & 0xFFFF_23FF) | 0x400);    // bits 63:32, 15:14, 12 and 11 reserved; bit 10 is 1 (SDM Vol. 3B §18.2.4)
        vcpu.IsInitialised = true;
        VcpuLifecycle.Up(vcpu);
        return 0;
    }

    /// <summary>One vCPU's <c>hvm_hw_cpu</c> from its VMCS and registers (Xen's <c>hvm_save_cpu_ctxt</c>).</summary>
    private static HvmHwCpu SaveCpu(VirtualCpu vcpu)
    {
        var vmcs = vcpu.Vmcs;
        ref readonly var g = ref vcpu.Registers;
        var c = new HvmHwCpu
        {
            Rax = g.Rax, Rbx = g.Rbx, Rcx = g.Rcx, Rdx = g.Rdx, Rbp = g.Rbp, Rsi = g.Rsi, Rdi = g.Rdi, Rsp = vmcs.Read(VmcsField.GuestRsp),
            R8 = g.R8, R9 = g.R9, R10 = g.R10, R11 = g.R11, R12 = g.R12, R13 = g.R13, R14 = g.R14, R15 = g.R15,
            Rip = vmcs.Read(VmcsField.GuestRip), Rflags = vmcs.Read(VmcsField.GuestRflags),
            Cr0 = GuestControlRegisters.Read(vmcs, 0), Cr3 = vmcs.Read(VmcsField.GuestCr3), Cr4 = GuestControlRegisters.Read(vmcs, 4),
            Dr7 = vmcs.Read(VmcsField.GuestDr7), Dr6 = 0xFFFF_0FF0,
            IdtrLimit = (uint)vmcs.Read(VmcsField.GuestIdtrLimit), IdtrBase = vmcs.Read(VmcsField.GuestIdtrBase),
            GdtrLimit = (uint)vmcs.Read(VmcsField.GuestGdtrLimit), GdtrBase = vmcs.Read(VmcsField.GuestGdtrBase),
            SysenterCs = vmcs.Read(VmcsField.GuestIa32SysenterCs), SysenterEsp = vmcs.Read(VmcsField.GuestIa32SysenterEsp),
            SysenterEip = vmcs.Read(VmcsField.GuestIa32SysenterEip), MsrEfer = vmcs.Read(VmcsField.GuestIa32Efer),
        };
        (c.EsSel, c.EsLimit, c.EsBase, c.EsArbytes) = Segment(vmcs, Es);
        (c.CsSel, c.CsLimit, c.CsBase, c.CsArbytes) = Segment(vmcs, Cs);
        (c.SsSel, c.SsLimit, c.SsBase, c.SsArbytes) = Segment(vmcs, Ss);
        (c.DsSel, c.DsLimit, c.DsBase, c.DsArbytes) = Segment(vmcs, Ds);
        (c.FsSel, c.FsLimit, c.FsBase, c.FsArbytes) = Segment(vmcs, Fs);
        (c.GsSel, c.GsLimit, c.GsBase, c.GsArbytes) = Segment(vmcs, Gs);
        (c.LdtrSel, c.LdtrLimit, c.LdtrBase, c.LdtrArbytes) = Segment(vmcs, Ldtr);
        (c.TrSel, c.TrLimit, c.TrBase, c.TrArbytes) = Segment(vmcs, Tr);
        return c;
    }

    /// <summary>The VMCS encodings of ES..TR are consecutive by 2 in this order (SDM Vol. 3C Appendix B).</summary>
    private const int Es = 0, Cs = 1, Ss = 2, Ds = 3, Fs = 4, Gs = 5, Ldtr = 6, Tr = 7;

    /// <summary>A segment as Xen saves it: VMX access rights (SDM Vol. 3C §25.4.1) folded to Xen's 12 bits, 0 when unusable.</summary>
    private static (uint Sel, uint Limit, ulong Base, uint Attr) Segment(Vmcs vmcs, int index)
    {
        uint step = (uint)(2 * index);
        uint ar = (uint)vmcs.Read(VmcsField.GuestEsAccessRights + step);
        uint attr = (ar & (1u << 16)) != 0 ? 0 : (ar & 0xFF) | ((ar >> 4) & 0xF00);
        return ((uint)vmcs.Read(VmcsField.GuestEsSelector + step), (uint)vmcs.Read(VmcsField.GuestEsLimit + step),
            vmcs.Read(VmcsField.GuestEsBase + step), attr);
    }

    /// <summary>
    /// Xen's <c>UNFOLD_ARBYTES</c>: attributes saved straight from an Intel VMCS by old Xen (bits 15:12 set, 11:8 clear)
    /// are rearranged into the 12-bit format; anything else is taken as it is (bits 31:16 are then invalid).
    /// </summary>
    private static ushort Unfold(uint arbytes)
    {
        if ((arbytes & 0xF000) != 0 && (arbytes & 0x0F00) == 0)
            arbytes = (arbytes & 0xFF) | ((arbytes >> 4) & 0x0F00);
        return arbytes > 0xFFFF ? (ushort)0xF000 : (ushort)arbytes;
    }

    /// <summary>The record's byte limit in the unit vcpu_hvm uses (4 KiB units when G is set).</summary>
    private static uint GranularLimit(uint limit, uint arbytes) => (Unfold(arbytes) & 0x800) != 0 ? limit >> 12 : limit;

    /// <summary>A byte limit VM entry accepts with these access rights: with G, bits 11:0 set; without, below 1 MiB (SDM Vol. 3C §27.3.1.2).</summary>
    private static bool LimitFits(uint limit, uint accessRights) =>
        (accessRights & (1u << 16)) != 0 || ((accessRights & (1u << 15)) != 0 ? (limit & 0xFFF) == 0xFFF : limit <= 0xF_FFFF);

    private static bool Canonical(ulong address) => (ulong)(((long)address << 16) >> 16) == address;

    private static void Put<T>(Span<byte> buffer, ref int pos, in T value)
        where T : unmanaged
    {
        MemoryMarshal.Write(buffer[pos..], in value);
        pos += Unsafe.SizeOf<T>();
    }

    private static bool TryTake<T>(ReadOnlySpan<byte> stream, ref int pos, out T value)
        where T : unmanaged
    {
        if (stream.Length - pos < Unsafe.SizeOf<T>())
        {
            value = default;
            return false;
        }

        value = MemoryMarshal.Read<T>(stream[pos..]);
        pos += Unsafe.SizeOf<T>();
        return true;
    }
}
