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
    public string? LockStepMismatch => _core.Translator?.FirstMismatch;

    /// <summary>Whether this host can run the translating tier (x86-64 hosts only).</summary>
    public static bool TranslatorSupported => BlockTranslator.HostSupported;
}
