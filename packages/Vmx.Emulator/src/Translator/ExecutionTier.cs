namespace VmmKit.Vmx.Emulator;

/// <summary>
/// How <see cref="EmulatedProcessor"/> executes guest code (docs/architecture.md, "The emulated processor").
/// </summary>
public enum ExecutionTier
{
    /// <summary>Every instruction runs in the interpreter (the default, and the only tier on a host that is not x86-64).</summary>
    Interpreter = 0,

    /// <summary>
    /// Hot blocks of 64-bit guest code are translated to host x86-64 code; whatever the translator does not handle
    /// (and every block on a host that is not x86-64) stays interpreted. Guest-visible behaviour is the interpreter's.
    /// </summary>
    Translator = 1,

    /// <summary>
    /// Like <see cref="Translator"/>, but each translated block run is checked against the interpreter from the same
    /// state (registers, flags, instruction count and the memory it wrote); execution continues with the interpreter's
    /// result and the first difference is reported by <see cref="EmulatedProcessor.LockStepMismatch"/>. A testing mode:
    /// several times slower than the interpreter alone, and for one processor per guest memory only — the check undoes
    /// the translated run's stores and replays them, so another processor (host thread) writing the same memory
    /// meanwhile both sees the undo and makes the comparison report false mismatches.
    /// </summary>
    LockStep = 2,
}
