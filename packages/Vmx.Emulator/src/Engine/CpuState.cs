using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// One segment register with its hidden part (SDM Vol. 3A §3.4.3 "Segment Registers").
/// 24 bytes, fixed layout.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SegmentRegister
{
    /// <summary>Visible selector.</summary>
    public ushort Selector;
    private ushort _pad;
    /// <summary>Access rights in the VMCS format (SDM Vol. 3C §24.4.1, table 24-2).</summary>
    public uint AccessRights;
    /// <summary>Segment limit in bytes (already scaled by G).</summary>
    public uint Limit;
    private uint _pad2;
    /// <summary>Segment base.</summary>
    public ulong Base;
}

/// <summary>
/// All architectural state of the emulated processor in one struct with a fixed layout, so that a
/// later translating tier can address fields by offset (docs/architecture.md, "The emulated processor"). Lives in native memory
/// (<see cref="Core.State"/>), never moves.
/// </summary>
/// <remarks>
/// GPR indexes follow the x86 encoding (= Iced register order): 0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP,
/// 5 RBP, 6 RSI, 7 RDI, 8..15 R8..R15. The arithmetic flags (CF PF AF ZF SF OF) in
/// <see cref="Rflags"/> are only valid while <see cref="LazyOp"/> is <see cref="LazyFlagOp.None"/>;
/// otherwise they are computed on demand from <see cref="LazyResult"/>, <see cref="LazySrc1"/>,
/// <see cref="LazySrc2"/> (see LazyFlags.cs). Use <see cref="GetRflags"/> / <see cref="SetRflags"/>.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CpuState
{
    /// <summary>RAX..R15 (offset 0).</summary>
    public fixed ulong Gpr[16];
    /// <summary>Instruction pointer (offset 128).</summary>
    public ulong Rip;
    /// <summary>RFLAGS; arithmetic bits are stale while <see cref="LazyOp"/> != None (offset 136).</summary>
    public ulong Rflags;
    /// <summary>Lazy flags: result of the last flag-setting operation (offset 144).</summary>
    public ulong LazyResult;
    /// <summary>Lazy flags: first source operand (offset 152).</summary>
    public ulong LazySrc1;
    /// <summary>Lazy flags: second source operand (offset 160).</summary>
    public ulong LazySrc2;
    /// <summary>Lazy flags: the operation, a <see cref="LazyFlagOp"/> (offset 168).</summary>
    public uint LazyOp;
    /// <summary>Lazy flags: operand size in bytes, 1/2/4/8 (offset 172).</summary>
    public uint LazySize;

    /// <summary>ES (Iced segment order ES, CS, SS, DS, FS, GS).</summary>
    public SegmentRegister Es;
    /// <summary>CS.</summary>
    public SegmentRegister Cs;
    /// <summary>SS.</summary>
    public SegmentRegister Ss;
    /// <summary>DS.</summary>
    public SegmentRegister Ds;
    /// <summary>FS.</summary>
    public SegmentRegister Fs;
    /// <summary>GS.</summary>
    public SegmentRegister Gs;
    /// <summary>LDTR.</summary>
    public SegmentRegister Ldtr;
    /// <summary>TR.</summary>
    public SegmentRegister Tr;
    /// <summary>GDTR base.</summary>
    public ulong GdtrBase;
    /// <summary>IDTR base.</summary>
    public ulong IdtrBase;
    /// <summary>GDTR limit.</summary>
    public uint GdtrLimit;
    /// <summary>IDTR limit.</summary>
    public uint IdtrLimit;

    /// <summary>Control register 0.</summary>
    public ulong Cr0;
    /// <summary>Control register 2 (page-fault linear address).</summary>
    public ulong Cr2;
    /// <summary>Control register 3.</summary>
    public ulong Cr3;
    /// <summary>Control register 4.</summary>
    public ulong Cr4;
    /// <summary>Control register 8 (TPR).</summary>
    public ulong Cr8;
    /// <summary>IA32_EFER.</summary>
    public ulong Efer;
    /// <summary>IA32_FS_BASE shadow is <see cref="Fs"/>.Base; IA32_KERNEL_GS_BASE.</summary>
    public ulong KernelGsBase;
    /// <summary>DR7.</summary>
    public ulong Dr7;
    /// <summary>DR0..DR3 (breakpoint linear addresses, SDM Vol. 3B §18.2.1).</summary>
    public fixed ulong Dr[4];
    /// <summary>DR6 (debug status, SDM Vol. 3B §18.2.3); reset value 0xFFFF0FF0.</summary>
    public ulong Dr6;
    /// <summary>IA32_STAR (SYSCALL/SYSRET selectors, SDM Vol. 3A §5.8.8).</summary>
    public ulong Star;
    /// <summary>IA32_LSTAR (64-bit SYSCALL target).</summary>
    public ulong Lstar;
    /// <summary>IA32_CSTAR (compatibility-mode SYSCALL target; never used by Intel processors, kept for WRMSR/RDMSR).</summary>
    public ulong Cstar;
    /// <summary>IA32_FMASK (RFLAGS mask applied by SYSCALL).</summary>
    public ulong Sfmask;
    /// <summary>IA32_TSC_AUX (RDTSCP's ECX).</summary>
    public ulong TscAux;
    /// <summary>IA32_SYSENTER_CS.</summary>
    public ulong SysenterCs;
    /// <summary>IA32_SYSENTER_ESP.</summary>
    public ulong SysenterEsp;
    /// <summary>IA32_SYSENTER_EIP.</summary>
    public ulong SysenterEip;
    /// <summary>IA32_PAT (SDM Vol. 3A §13.12.2); power-on value 0x0007040600070406.</summary>
    public ulong Pat;
    /// <summary>TSC multiplier (VMCS "TSC multiplier", 48-bit binary fraction; 1 &lt;&lt; 48 = 1.0).</summary>
    public ulong TscMultiplier;

    /// <summary>XMM0..XMM15, two 64-bit halves each (low half first). Offset is 16-byte aligned.</summary>
    public fixed ulong Xmm[32];
    /// <summary>MXCSR (SDM Vol. 1 §10.2.3); reset value 0x1F80.</summary>
    public uint Mxcsr;
    // Keeps the layout after MXCSR (the x87 control word lives in Fpu).
    private uint _pad;

    /// <summary>Instructions retired since reset; the TSC is derived from it.</summary>
    public ulong InstructionsRetired;
    /// <summary>Value added to <see cref="InstructionsRetired"/> to form the TSC (IA32_TSC writes, TSC offset).</summary>
    public ulong TscOffset;
    /// <summary>x87, MMX and XSAVE-management state (src/Fpu/FpuState.cs).</summary>
    public FpuState Fpu;

    /// <summary>Reference to GPR <paramref name="index"/> (0..15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    [UnscopedRef]
    public ref ulong R(int index) => ref Unsafe.Add(ref Gpr[0], index);

    /// <summary>Segment register by Iced order (0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    [UnscopedRef]
    public ref SegmentRegister Segment(int index) => ref Unsafe.Add(ref Es, index);

    /// <summary>Low 64 bits of XMM<paramref name="index"/>.</summary>
    [UnscopedRef]
    public ref ulong XmmLow(int index) => ref Unsafe.Add(ref Xmm[0], index * 2);

    /// <summary>High 64 bits of XMM<paramref name="index"/>.</summary>
    [UnscopedRef]
    public ref ulong XmmHigh(int index) => ref Unsafe.Add(ref Xmm[0], index * 2 + 1);

    /// <summary>The full RFLAGS value (materializes lazy flags).</summary>
    public ulong GetRflags()
    {
        LazyFlags.Materialize(ref this);
        return Rflags;
    }

    /// <summary>Sets RFLAGS (bit 1 forced to 1, reserved bits cleared) and drops lazy state.</summary>
    public void SetRflags(ulong value)
    {
        LazyOp = (uint)LazyFlagOp.None;
        Rflags = (value & RflagsBits.Writable) | RflagsBits.Reserved1;
    }
}
