using System.Numerics;

namespace VmmKit.Vmx;

/// <summary>
/// A 32-bit VMX control capability MSR (SDM Vol. 3D Appendix A.3–A.5): bits 31:0 are the allowed 0-settings
/// (a 1 there means the control must be 1), bits 63:32 the allowed 1-settings (a 0 there means the control must be 0).
/// </summary>
/// <param name="MsrValue">The MSR value.</param>
public readonly record struct VmxControlCapability(ulong MsrValue)
{
    /// <summary>Controls that must be 1 (bits 31:0 of the MSR).</summary>
    public uint MustBeOne => (uint)MsrValue;

    /// <summary>Controls that may be 1 (bits 63:32 of the MSR).</summary>
    public uint MayBeOne => (uint)(MsrValue >> 32);

    /// <summary>Builds the capability from its two halves.</summary>
    public static VmxControlCapability Create(uint mustBeOne, uint mayBeOne) => new((ulong)mayBeOne << 32 | mustBeOne);

    /// <summary>True when <paramref name="controls"/> sets every must-be-one bit and no must-be-zero bit (the VM-entry check of §27.2.1.1).</summary>
    public bool Allows(uint controls) => (controls & MustBeOne) == MustBeOne && (controls & ~MayBeOne) == 0;

    /// <summary>
    /// Adjusts <paramref name="desired"/>: sets the must-be-one bits and keeps the desired bits. Fails when a desired bit
    /// may not be 1, or a bit in <paramref name="mustBeZero"/> must be 1.
    /// </summary>
    /// <param name="desired">Controls the caller wants set.</param>
    /// <param name="mustBeZero">Controls the caller needs clear (default-1 controls the caller relies on being off).</param>
    /// <param name="adjusted">The value to program when the result is true; otherwise the closest value the processor allows.</param>
    /// <param name="unsatisfiable">The bits that could not be honoured (0 on success).</param>
    public bool TryAdjust(uint desired, uint mustBeZero, out uint adjusted, out uint unsatisfiable)
    {
        adjusted = (desired | MustBeOne) & MayBeOne;
        unsatisfiable = (desired & ~MayBeOne) | (mustBeZero & MustBeOne);
        if ((mustBeZero & ~MustBeOne) != 0)
            adjusted &= ~(mustBeZero & ~MustBeOne);
        return unsatisfiable == 0;
    }

    /// <summary>The number of controls that are free to choose (may be 0 or 1).</summary>
    public int FlexibleCount => BitOperations.PopCount(MayBeOne & ~MustBeOne);
}
