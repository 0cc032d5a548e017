using System.Runtime.InteropServices;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>struct vcpu_hvm_x86_32</c> (xen/include/public/hvm/hvm_vcpu.h): the state VCPUOP_initialise starts an HVM vCPU
/// with in 32-bit mode (or compatibility mode with EFER.LMA). Segment attributes are Xen's 16-bit <c>attr</c> (type, S,
/// DPL, P in bits 7:0; AVL, L, D/B, G in bits 11:8; bits 15:12 must be 0). The same 120 bytes for 32- and 64-bit callers.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct VcpuHvmX86_32
{
    /// <summary>General registers, <c>eax</c> ... <c>edi</c>, in that order.</summary>
    public uint Eax, Ecx, Edx, Ebx, Esp, Ebp, Esi, Edi;

    /// <summary><c>eip</c>.</summary>
    public uint Eip;

    /// <summary><c>eflags</c>.</summary>
    public uint Eflags;

    /// <summary><c>cr0</c>, <c>cr3</c>, <c>cr4</c>.</summary>
    public uint Cr0, Cr3, Cr4;

    /// <summary><c>pad1</c>.</summary>
    public uint Pad1;

    /// <summary><c>efer</c>: NXE, or LME/LMA for compatibility mode.</summary>
    public ulong Efer;

    /// <summary><c>cs_base</c> ... <c>tr_base</c>.</summary>
    public uint CsBase, DsBase, SsBase, EsBase, TrBase;

    /// <summary><c>cs_limit</c> ... <c>tr_limit</c> (in G units when G is set).</summary>
    public uint CsLimit, DsLimit, SsLimit, EsLimit, TrLimit;

    /// <summary><c>cs_ar</c> ... <c>tr_ar</c>.</summary>
    public ushort CsAr, DsAr, SsAr, EsAr, TrAr;

    /// <summary><c>pad2[3]</c>.</summary>
    public ushort Pad2a, Pad2b, Pad2c;
}

/// <summary>
/// <c>struct vcpu_hvm_x86_64</c> (hvm_vcpu.h): the state VCPUOP_initialise starts an HVM vCPU with directly in long
/// mode; the segments are then flat 64-bit ones.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct VcpuHvmX86_64
{
    /// <summary>General registers, <c>rax</c> ... <c>rdi</c>, in that order.</summary>
    public ulong Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi;

    /// <summary><c>rip</c>.</summary>
    public ulong Rip;

    /// <summary><c>rflags</c>.</summary>
    public ulong Rflags;

    /// <summary><c>cr0</c>, <c>cr3</c>, <c>cr4</c>, <c>efer</c>.</summary>
    public ulong Cr0, Cr3, Cr4, Efer;
}

/// <summary><c>struct vcpu_hvm_context</c> (hvm_vcpu.h): VCPUOP_initialise's argument for an HVM/PVH vCPU.</summary>
[StructLayout(LayoutKind.Explicit, Size = 128)]
internal struct VcpuHvmContext
{
    /// <summary><c>VCPU_HVM_MODE_32B</c>: <see cref="X86_32"/> is used.</summary>
    public const uint Mode32 = 0;

    /// <summary><c>VCPU_HVM_MODE_64B</c>: <see cref="X86_64"/> is used.</summary>
    public const uint Mode64 = 1;

    /// <summary><c>mode</c>: VCPU_HVM_MODE_*.</summary>
    [FieldOffset(0)]
    public uint Mode;

    /// <summary><c>pad</c>.</summary>
    [FieldOffset(4)]
    public uint Pad;

    /// <summary><c>cpu_regs.x86_32</c>.</summary>
    [FieldOffset(8)]
    public VcpuHvmX86_32 X86_32;

    /// <summary><c>cpu_regs.x86_64</c>.</summary>
    [FieldOffset(8)]
    public VcpuHvmX86_64 X86_64;
}
