using System.Runtime.CompilerServices;
using VmmKit.Vmx.Emulator;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The memory-type range registers of each vCPU (SDM Vol. 3A §13.11), as Xen's HVM MTRR emulation keeps them
/// (xen/arch/x86/hvm/mtrr.c): IA32_MTRRCAP with 8 variable ranges, fixed ranges and write-combining; IA32_MTRR_DEF_TYPE,
/// the 11 fixed-range and 8 variable-range pairs, each write checked for valid memory types and reserved bits (#GP
/// otherwise). A PVH domain has no firmware, so the domain builder starts every vCPU with the MTRRs enabled and
/// write-back as the default type (libxc's <c>vcpu_hvm</c>: <c>MTRR_TYPE_WRBACK | MTRR_DEF_TYPE_ENABLE</c>); Linux then
/// sets up its PAT. The processor does not model caches, so the registers are state the guest reads back, nothing more.
/// </summary>
internal static class MtrrMsrs
{
    public const uint Cap = 0xFE, DefType = 0x2FF, PhysBase0 = 0x200, Fix64K = 0x250, Fix16K80000 = 0x258, Fix16KA0000 = 0x259,
        Fix4KC0000 = 0x268, Fix4KF8000 = 0x26F;

    /// <summary>Variable ranges offered (Xen's <c>MTRR_VCNT</c>).</summary>
    private const int VariableRanges = 8;

    /// <summary>IA32_MTRRCAP: VCNT, FIX (bit 8), WC (bit 10); no SMRR.</summary>
    private const ulong CapValue = VariableRanges | (1ul << 8) | (1ul << 10);

    /// <summary>IA32_MTRR_DEF_TYPE at build: type WB (6), E (bit 11) set, FE clear.</summary>
    private const ulong InitialDefType = 6 | (1ul << 11);

    private sealed class State
    {
        public ulong DefType = InitialDefType;
        public readonly ulong[] Fixed = new ulong[11];
        public readonly ulong[] Variable = new ulong[2 * VariableRanges];
    }

    private static readonly ConditionalWeakTable<VirtualCpu, State> States = new();

    /// <summary>Whether <paramref name="msr"/> is one of the MTRRs.</summary>
    public static bool Owns(uint msr) => msr is Cap or DefType or Fix64K or Fix16K80000 or Fix16KA0000
        or (>= Fix4KC0000 and <= Fix4KF8000) or (>= PhysBase0 and < PhysBase0 + 2 * VariableRanges);

    /// <summary>RDMSR of an MTRR (<see cref="Owns"/> is true).</summary>
    public static ulong Read(VirtualCpu vcpu, uint msr)
    {
        var s = States.GetValue(vcpu, _ => new State());
        return msr switch
        {
            Cap => CapValue,
            DefType => s.DefType,
            >= PhysBase0 and < PhysBase0 + 2 * VariableRanges => s.Variable[msr - PhysBase0],
            _ => s.Fixed[FixedIndex(msr)],
        };
    }

    /// <summary>WRMSR of an MTRR: false (#GP) for IA32_MTRRCAP, an invalid memory type or a reserved bit set.</summary>
    public static bool TryWrite(VirtualCpu vcpu, uint msr, ulong value)
    {
        var s = States.GetValue(vcpu, _ => new State());
        switch (msr)
        {
            case Cap:
                return false;
            case DefType:
                // mtrr_def_type_msr_set: bits 7:0 a valid type, only FE (10) and E (11) besides.
                if (!ValidType(value & 0xFF) || (value & ~0xCFFul) != 0)
                    return false;
                s.DefType = value;
                return true;
            case >= PhysBase0 and < PhysBase0 + 2 * VariableRanges:
            {
                // mtrr_var_range_msr_set: nothing at or above MAXPHYADDR; PHYSBASE bits 11:8 and PHYSMASK bits 10:0 reserved.
                int index = (int)(msr - PhysBase0);
                ulong reserved = ~((1ul << (int)(EmulatedFeatures.AddressSizes & 0xFF)) - 1) | ((index & 1) != 0 ? 0x7FFul : 0xF00ul);
                if ((value & reserved) != 0 || ((index & 1) == 0 && !ValidType(value & 0xFF)))
                    return false;
                s.Variable[index] = value;
                return true;
            }

            default:
                // mtrr_fix_range_msr_set: each of the 8 bytes a valid type.
                for (int i = 0; i < 8; i++)
                {
                    if (!ValidType((value >> (8 * i)) & 0xFF))
                        return false;
                }

                s.Fixed[FixedIndex(msr)] = value;
                return true;
        }
    }

    /// <summary>
    /// The MSR of fixed-range MTRR <paramref name="index"/> in Xen's <c>hvm_hw_mtrr.msr_mtrr_fixed</c> order: 0 FIX64K_00000,
    /// 1 FIX16K_80000, 2 FIX16K_A0000, 3 to 10 FIX4K_C0000 to FIX4K_F8000.
    /// </summary>
    public static uint FixedMsr(int index) => index switch
    {
        0 => Fix64K,
        1 => Fix16K80000,
        2 => Fix16KA0000,
        _ => Fix4KC0000 + (uint)(index - 3),
    };

    /// <summary>UC (0), WC (1), WT (4), WP (5), WB (6): the types an MTRR may hold (SDM Vol. 3A §13.11.1).</summary>
    private static bool ValidType(ulong type) => type is 0 or 1 or 4 or 5 or 6;

    private static int FixedIndex(uint msr) => msr switch
    {
        Fix64K => 0,
        Fix16K80000 => 1,
        Fix16KA0000 => 2,
        _ => 3 + (int)(msr - Fix4KC0000),
    };
}
