using System.Runtime.InteropServices;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// The HVM save stream of XEN_DOMCTL_get/sethvmcontext (xen/include/public/hvm/save.h): records, each a
/// <see cref="HvmSaveDescriptor"/> followed by <c>length</c> bytes; the stream opens with HEADER and ends with END.
/// </summary>
internal static class HvmSave
{
    /// <summary><c>HVM_SAVE_CODE(END)</c>: the last record, length 0.</summary>
    public const ushort CodeEnd = 0;

    /// <summary><c>HVM_SAVE_CODE(HEADER)</c>.</summary>
    public const ushort CodeHeader = 1;

    /// <summary><c>HVM_SAVE_CODE(CPU)</c>: one per vCPU, instance = vCPU id.</summary>
    public const ushort CodeCpu = 2;

    /// <summary><c>HVM_SAVE_CODE(LAPIC)</c>: one per vCPU, <see cref="HvmHwLapic"/>.</summary>
    public const ushort CodeLapic = 5;

    /// <summary><c>HVM_SAVE_CODE(LAPIC_REGS)</c>: one per vCPU, <see cref="HvmHwLapicRegs"/>.</summary>
    public const ushort CodeLapicRegs = 6;

    /// <summary><c>HVM_SAVE_CODE(MTRR)</c>: one per vCPU, <see cref="HvmHwMtrr"/>.</summary>
    public const ushort CodeMtrr = 14;

    /// <summary><c>VLAPIC_SW_DISABLED</c> in <c>hvm_hw_lapic.disabled</c>: SVR's APIC software enable is clear.</summary>
    public const uint LapicSwDisabled = 1;

    /// <summary><c>VLAPIC_HW_DISABLED</c>: IA32_APIC_BASE.EN is clear.</summary>
    public const uint LapicHwDisabled = 2;

    /// <summary><c>MTRR_VCNT</c>: variable-range pairs in <see cref="HvmHwMtrr"/>.</summary>
    public const int MtrrVcnt = 8;

    /// <summary><c>NUM_FIXED_MSR</c>: fixed-range MTRRs in <see cref="HvmHwMtrr"/>.</summary>
    public const int MtrrFixed = 11;

    /// <summary><c>HVM_FILE_MAGIC</c>.</summary>
    public const uint FileMagic = 0x54381286;

    /// <summary><c>HVM_FILE_VERSION</c>.</summary>
    public const uint FileVersion = 1;

    /// <summary><c>XEN_X86_FPU_INITIALISED</c>, the only bit of <c>hvm_hw_cpu.flags</c>.</summary>
    public const uint FpuInitialised = 1;
}

/// <summary><c>struct hvm_save_descriptor</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct HvmSaveDescriptor
{
    /// <summary><c>typecode</c>: HVM_SAVE_CODE of the record.</summary>
    public ushort TypeCode;

    /// <summary><c>instance</c>: e.g. the vCPU id of a CPU record.</summary>
    public ushort Instance;

    /// <summary><c>length</c>: bytes of record data following this descriptor.</summary>
    public uint Length;
}

/// <summary><c>struct hvm_save_header</c> (arch-x86/hvm/save.h, 24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct HvmSaveHeader
{
    /// <summary><c>magic</c>: <see cref="HvmSave.FileMagic"/>.</summary>
    public uint Magic;

    /// <summary><c>version</c>: <see cref="HvmSave.FileVersion"/>.</summary>
    public uint Version;

    /// <summary><c>changeset</c>: the saving hypervisor's version (informative).</summary>
    public ulong Changeset;

    /// <summary><c>cpuid</c>: CPUID.01H:EAX of the saving host (informative).</summary>
    public uint Cpuid;

    /// <summary><c>gtsc_khz</c>: the guest's TSC frequency in kHz.</summary>
    public uint GtscKhz;
}

/// <summary>
/// <c>struct hvm_hw_cpu</c> (arch-x86/hvm/save.h, 1032 bytes): one vCPU's registers. Segment <c>*_arbytes</c> are Xen's
/// 12-bit attribute format (type, S, DPL, P in bits 7:0; AVL, L, D/B, G in bits 11:8).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct HvmHwCpu
{
    /// <summary><c>fpu_regs</c>: the FXSAVE image.</summary>
    public fixed byte FpuRegs[512];

    /// <summary>General registers in Xen's order: <c>rax, rbx, rcx, rdx, rbp, rsi, rdi, rsp, r8 ... r15</c>.</summary>
    public ulong Rax, Rbx, Rcx, Rdx, Rbp, Rsi, Rdi, Rsp, R8, R9, R10, R11, R12, R13, R14, R15;

    /// <summary><c>rip</c>, <c>rflags</c>.</summary>
    public ulong Rip, Rflags;

    /// <summary><c>cr0, cr2, cr3, cr4</c>.</summary>
    public ulong Cr0, Cr2, Cr3, Cr4;

    /// <summary><c>dr0 ... dr3, dr6, dr7</c>.</summary>
    public ulong Dr0, Dr1, Dr2, Dr3, Dr6, Dr7;

    /// <summary>Selectors: <c>cs, ds, es, fs, gs, ss, tr, ldtr</c>.</summary>
    public uint CsSel, DsSel, EsSel, FsSel, GsSel, SsSel, TrSel, LdtrSel;

    /// <summary>Limits: <c>cs, ds, es, fs, gs, ss, tr, ldtr, idtr, gdtr</c> (in bytes).</summary>
    public uint CsLimit, DsLimit, EsLimit, FsLimit, GsLimit, SsLimit, TrLimit, LdtrLimit, IdtrLimit, GdtrLimit;

    /// <summary>Bases: <c>cs, ds, es, fs, gs, ss, tr, ldtr, idtr, gdtr</c>.</summary>
    public ulong CsBase, DsBase, EsBase, FsBase, GsBase, SsBase, TrBase, LdtrBase, IdtrBase, GdtrBase;

    /// <summary>Attributes: <c>cs, ds, es, fs, gs, ss, tr, ldtr</c>.</summary>
    public uint CsArbytes, DsArbytes, EsArbytes, FsArbytes, GsArbytes, SsArbytes, TrArbytes, LdtrArbytes;

    /// <summary><c>sysenter_cs, sysenter_esp, sysenter_eip</c>.</summary>
    public ulong SysenterCs, SysenterEsp, SysenterEip;

    /// <summary><c>shadow_gs</c> (IA32_KERNEL_GS_BASE).</summary>
    public ulong ShadowGs;

    /// <summary><c>msr_flags</c> (obsolete, ignored), <c>msr_lstar, msr_star, msr_cstar, msr_syscall_mask, msr_efer, msr_tsc_aux</c>.</summary>
    public ulong MsrFlags, MsrLstar, MsrStar, MsrCstar, MsrSyscallMask, MsrEfer, MsrTscAux;

    /// <summary><c>tsc</c>: the guest's TSC.</summary>
    public ulong Tsc;

    /// <summary><c>pending_event</c> (vector 7:0, type 10:8, error valid 11, valid 31).</summary>
    public uint PendingEvent;

    /// <summary><c>error_code</c> of the pending event.</summary>
    public uint ErrorCode;

    /// <summary><c>flags</c>: <see cref="HvmSave.FpuInitialised"/>.</summary>
    public uint Flags;

    /// <summary><c>pad0</c>: must be 0.</summary>
    public uint Pad0;
}

/// <summary><c>struct hvm_hw_lapic</c> (arch-x86/hvm/save.h, 24 bytes): the local APIC state outside its register page.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct HvmHwLapic
{
    /// <summary><c>apic_base_msr</c>: IA32_APIC_BASE.</summary>
    public ulong ApicBaseMsr;

    /// <summary><c>disabled</c>: <see cref="HvmSave.LapicSwDisabled"/>, <see cref="HvmSave.LapicHwDisabled"/>.</summary>
    public uint Disabled;

    /// <summary><c>timer_divisor</c>: the divide configuration as a divisor (1 to 128).</summary>
    public uint TimerDivisor;

    /// <summary><c>tdt_msr</c>: IA32_TSC_DEADLINE.</summary>
    public ulong TdtMsr;
}

/// <summary><c>struct hvm_hw_lapic_regs</c> (1024 bytes): the first 1 KiB of the xAPIC register page, a register per 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct HvmHwLapicRegs
{
    /// <summary><c>data</c>.</summary>
    public fixed byte Data[1024];
}

/// <summary><c>struct hvm_hw_mtrr</c> (arch-x86/hvm/save.h, 240 bytes): IA32_PAT and the MTRRs of one vCPU.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct HvmHwMtrr
{
    /// <summary><c>msr_pat_cr</c>: IA32_PAT.</summary>
    public ulong MsrPatCr;

    /// <summary><c>msr_mtrr_var[MTRR_VCNT * 2]</c>: PHYSBASE0, PHYSMASK0, PHYSBASE1, ...</summary>
    public fixed ulong MsrMtrrVar[2 * HvmSave.MtrrVcnt];

    /// <summary><c>msr_mtrr_fixed[NUM_FIXED_MSR]</c>: FIX64K_00000, FIX16K_80000, FIX16K_A0000, FIX4K_C0000 ... FIX4K_F8000.</summary>
    public fixed ulong MsrMtrrFixed[HvmSave.MtrrFixed];

    /// <summary><c>msr_mtrr_cap</c>: IA32_MTRRCAP (VCNT in bits 7:0).</summary>
    public ulong MsrMtrrCap;

    /// <summary><c>msr_mtrr_def_type</c>: IA32_MTRR_DEF_TYPE.</summary>
    public ulong MsrMtrrDefType;
}
