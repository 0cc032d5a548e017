using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>
/// <c>struct shared_info</c> (xen/xen.h, x86-64 layout, 3136 bytes): the page a guest maps with
/// <c>XENMEM_add_to_physmap(XENMAPSPACE_shared_info)</c>, holding the first 32 vCPUs'
/// <see cref="VcpuInfo"/>, the 2-level event channel bitmaps and the wallclock. For HVM guests
/// Xen latches the 64-bit or 32-bit (<see cref="CompatSharedInfo"/>) layout from the guest's mode
/// at its first PV-driver operations (<c>hvm_latch_shinfo_size</c>, xen/arch/x86/hvm/hvm.c).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct SharedInfo
{
    /// <summary><c>XEN_LEGACY_MAX_VCPUS</c>: vCPUs whose <c>vcpu_info</c> lives in this page.</summary>
    public const int LegacyMaxVcpus = 32;

    /// <summary><c>vcpu_info[XEN_LEGACY_MAX_VCPUS]</c>.</summary>
    public VcpuInfos VcpuInfo;
    /// <summary><c>evtchn_pending[64]</c>: one bit per event channel port (4096 ports).</summary>
    public EventChannelWords EvtchnPending;
    /// <summary><c>evtchn_mask[64]</c>: masked ports.</summary>
    public EventChannelWords EvtchnMask;
    /// <summary><c>wc_version</c>: odd while the wallclock is being updated.</summary>
    public uint WcVersion;
    /// <summary><c>wc_sec</c>: wallclock seconds at system time 0 (low 32 bits).</summary>
    public uint WcSec;
    /// <summary><c>wc_nsec</c>: wallclock nanoseconds.</summary>
    public uint WcNsec;
    /// <summary><c>wc_sec_hi</c>: high 32 bits of the wallclock seconds.</summary>
    public uint WcSecHi;
    /// <summary><c>arch</c>.</summary>
    public ArchSharedInfo Arch;

    /// <summary>The 32 <see cref="Hypercall.VcpuInfo"/> slots.</summary>
    [InlineArray(LegacyMaxVcpus)]
    public struct VcpuInfos { private Hypercall.VcpuInfo _element0; }

    /// <summary><c>xen_ulong_t[64]</c>.</summary>
    [InlineArray(64)]
    public struct EventChannelWords { private ulong _element0; }
}

/// <summary><c>struct arch_shared_info</c> (xen/arch-x86/xen-x86_64.h): PV p2m bookkeeping, unused by HVM guests.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ArchSharedInfo
{
    /// <summary><c>max_pfn</c>.</summary>
    public ulong MaxPfn;
    /// <summary><c>pfn_to_mfn_frame_list_list</c>.</summary>
    public ulong PfnToMfnFrameListList;
    /// <summary><c>nmi_reason</c>.</summary>
    public ulong NmiReason;
    /// <summary><c>p2m_cr3</c>.</summary>
    public ulong P2mCr3;
    /// <summary><c>p2m_vaddr</c>.</summary>
    public ulong P2mVaddr;
    /// <summary><c>p2m_generation</c>.</summary>
    public ulong P2mGeneration;
}

/// <summary><c>struct vcpu_info</c> (xen/xen.h, x86-64 layout, 64 bytes): per-vCPU event and time state.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct VcpuInfo
{
    /// <summary><c>evtchn_upcall_pending</c>: set by the hypervisor when an event is pending for this vCPU.</summary>
    public byte EvtchnUpcallPending;
    /// <summary><c>evtchn_upcall_mask</c>: set by the guest to hold off upcalls.</summary>
    public byte EvtchnUpcallMask;
    /// <summary><c>evtchn_pending_sel</c>: which words of <c>evtchn_pending</c> have pending bits.</summary>
    public ulong EvtchnPendingSel;
    /// <summary><c>arch</c>.</summary>
    public ArchVcpuInfo Arch;
    /// <summary><c>time</c>.</summary>
    public VcpuTimeInfo Time;
}

/// <summary><c>struct arch_vcpu_info</c> (xen/arch-x86/xen-x86_64.h), 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ArchVcpuInfo
{
    /// <summary><c>cr2</c>.</summary>
    public ulong Cr2;
    /// <summary><c>pad</c>.</summary>
    public ulong Pad;
}

/// <summary>
/// <c>struct vcpu_time_info</c> (xen/xen.h), 32 bytes in both ABIs: the pvclock. The guest computes
/// <c>system_time + ((tsc - tsc_timestamp) &lt;&lt; tsc_shift) * tsc_to_system_mul &gt;&gt; 32</c> while
/// <c>version</c> is even and unchanged across the read.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct VcpuTimeInfo
{
    /// <summary><c>XEN_PVCLOCK_TSC_STABLE_BIT</c> in <see cref="Flags"/>.</summary>
    public const byte TscStableBit = 1 << 0;
    /// <summary><c>XEN_PVCLOCK_GUEST_STOPPED</c> in <see cref="Flags"/>.</summary>
    public const byte GuestStopped = 1 << 1;

    /// <summary><c>version</c>: odd while the hypervisor updates the fields.</summary>
    public uint Version;
    /// <summary><c>pad0</c>.</summary>
    public uint Pad0;
    /// <summary><c>tsc_timestamp</c>: TSC at the last update.</summary>
    public ulong TscTimestamp;
    /// <summary><c>system_time</c>: nanoseconds since boot at <see cref="TscTimestamp"/>.</summary>
    public ulong SystemTime;
    /// <summary><c>tsc_to_system_mul</c>: 32.32 fixed-point multiplier.</summary>
    public uint TscToSystemMul;
    /// <summary><c>tsc_shift</c>.</summary>
    public sbyte TscShift;
    /// <summary><c>flags</c>: <see cref="TscStableBit"/>, <see cref="GuestStopped"/>.</summary>
    public byte Flags;
    /// <summary><c>pad1[2]</c>.</summary>
    public ushort Pad1;
}

/// <summary><c>struct shared_info</c> as a 32-bit guest lays it out (<c>xen_ulong_t</c> is 32 bits), 2344 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatSharedInfo
{
    /// <summary><c>vcpu_info[32]</c>.</summary>
    public VcpuInfos VcpuInfo;
    /// <summary><c>evtchn_pending[32]</c>: 1024 ports.</summary>
    public EventChannelWords EvtchnPending;
    /// <summary><c>evtchn_mask[32]</c>.</summary>
    public EventChannelWords EvtchnMask;
    /// <summary><c>wc_version</c>.</summary>
    public uint WcVersion;
    /// <summary><c>wc_sec</c>.</summary>
    public uint WcSec;
    /// <summary><c>wc_nsec</c>.</summary>
    public uint WcNsec;
    /// <summary><c>arch</c> (ends with <c>wc_sec_hi</c> on i386).</summary>
    public CompatArchSharedInfo Arch;

    /// <summary>The 32 <see cref="CompatVcpuInfo"/> slots.</summary>
    [InlineArray(SharedInfo.LegacyMaxVcpus)]
    public struct VcpuInfos { private CompatVcpuInfo _element0; }

    /// <summary><c>xen_ulong_t[32]</c>.</summary>
    [InlineArray(32)]
    public struct EventChannelWords { private uint _element0; }
}

/// <summary><c>struct arch_shared_info</c> (xen/arch-x86/xen-x86_32.h).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatArchSharedInfo
{
    /// <summary><c>max_pfn</c>.</summary>
    public uint MaxPfn;
    /// <summary><c>pfn_to_mfn_frame_list_list</c>.</summary>
    public uint PfnToMfnFrameListList;
    /// <summary><c>nmi_reason</c>.</summary>
    public uint NmiReason;
    /// <summary><c>p2m_cr3</c>.</summary>
    public uint P2mCr3;
    /// <summary><c>p2m_vaddr</c>.</summary>
    public uint P2mVaddr;
    /// <summary><c>p2m_generation</c>.</summary>
    public uint P2mGeneration;
    /// <summary><c>wc_sec_hi</c>.</summary>
    public uint WcSecHi;
}

/// <summary><c>struct vcpu_info</c> as a 32-bit guest lays it out, 64 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatVcpuInfo
{
    /// <summary><c>evtchn_upcall_pending</c>.</summary>
    public byte EvtchnUpcallPending;
    /// <summary><c>evtchn_upcall_mask</c>.</summary>
    public byte EvtchnUpcallMask;
    /// <summary><c>evtchn_pending_sel</c>.</summary>
    public uint EvtchnPendingSel;
    /// <summary><c>arch</c>.</summary>
    public CompatArchVcpuInfo Arch;
    /// <summary><c>time</c>.</summary>
    public VcpuTimeInfo Time;
}

/// <summary><c>struct arch_vcpu_info</c> (xen/arch-x86/xen-x86_32.h), 24 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatArchVcpuInfo
{
    /// <summary><c>cr2</c>.</summary>
    public uint Cr2;
    /// <summary><c>pad[5]</c>.</summary>
    public Padding Pad;

    /// <summary><c>unsigned long[5]</c>.</summary>
    [InlineArray(5)]
    public struct Padding { private uint _element0; }
}
