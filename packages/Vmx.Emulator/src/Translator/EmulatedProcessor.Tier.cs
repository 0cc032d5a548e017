using VmmKit.Vmx.Emulator.Translator;

namespace VmmKit.Vmx.Emulator;

/// <summary>The execution-tier switch of the processor (src/Translator/).</summary>
public sealed partial class EmulatedProcessor
{
    /// <summary>
    /// How guest code runs: <see cref="ExecutionTier.Interpreter"/> (default), <see cref="ExecutionTier.Translator"/>
    /// (hot 64-bit blocks translated to host code) or <see cref="ExecutionTier.LockStep"/> (translated blocks checked
    /// against the interpreter). On a host that is not x86-64 the value is kept but only the interpreter runs.
    /// Changing it drops every translation; guest-visible behaviour, including instructions retired, is the same in
    /// every tier.
    /// </summary>
    public ExecutionTier ExecutionTier
    {
        get => _core.Tier;
        set
        {
            if (value is not (ExecutionTier.Interpreter or ExecutionTier.Translator or ExecutionTier.LockStep))
            {
                throw new ArgumentOutOfRangeException(nameof(value));
            }
            _core.SetTier(value);
        }
    }

    /// <summary>
    /// In <see cref="ExecutionTier.LockStep"/>: a description of the first translated block run whose registers, flags,
    /// instruction count or memory stores differed from the interpreter's (that block is interpreted from then on), or
    /// null when none did.
    /// </summary>
    public string? LockStepMismatch => _core.LastTranslator?.FirstMismatch;

    /// <summary>
    /// Runs of a block before the translating tier translates it (default 16; 1 translates every block at first
    /// sight, which is what lock-step test runs use). Applies to the current and later translators.
    /// </summary>
    public int TranslationThreshold
    {
        get => _core.HotThreshold;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            _core.HotThreshold = value;
            if (_core.Translator is { } t) t.Threshold = value;
        }
    }

    /// <summary>Lock-step: translated block runs compared with the interpreter so far (0 in the other tiers; still readable after <see cref="Dispose"/>).</summary>
    public long LockStepChecks => _core.LastTranslator?.LockStepChecks ?? 0;

    /// <summary>Guest instructions retired by translated code so far (0 when only the interpreter runs).</summary>
    public long TranslatedInstructions => _core.LastTranslator?.NativeInstructions ?? 0;

    /// <summary>Whether this host can run the translating tier (x86-64 hosts only).</summary>
    public static bool TranslatorSupported => BlockTranslator.HostSupported;
}
