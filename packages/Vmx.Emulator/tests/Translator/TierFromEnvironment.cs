using System.Runtime.CompilerServices;
using VmmKit.Vmx.Emulator.Translator;

namespace VmmKit.Vmx.Emulator.Tests.Translator;

/// <summary>
/// <c>VMMKIT_EMULATOR_TIER=Translator</c> (or <c>LockStep</c>) runs the whole emulator test suite with that tier in
/// every processor and flat machine the tests create, translating blocks at first sight; in lock-step the first
/// mismatch throws, failing the test that hit it.
/// </summary>
internal static class TierFromEnvironment
{
    [ModuleInitializer]
    internal static void Apply()
    {
        string? value = Environment.GetEnvironmentVariable("VMMKIT_EMULATOR_TIER");
        if (string.IsNullOrEmpty(value)) return;
        if (!Enum.TryParse(value, ignoreCase: true, out ExecutionTier tier))
        {
            throw new InvalidOperationException($"VMMKIT_EMULATOR_TIER={value}: expected Interpreter, Translator or LockStep");
        }
        BlockTranslator.DefaultTier = tier;
        BlockTranslator.DefaultHotThreshold = 1;
        BlockTranslator.FailOnMismatch = true;
    }
}
