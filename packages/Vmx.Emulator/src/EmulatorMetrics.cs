using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Text;

namespace VmmKit.Vmx.Emulator;

/// <summary>
/// The emulated processor's <see cref="System.Diagnostics.Metrics"/> instruments, on the meter <see cref="MeterName"/>
/// (shared by every <see cref="EmulatedProcessor"/> in the process): VM exits by basic exit reason and guest
/// instructions retired, recorded once per <see cref="EmulatedProcessor.Run"/>. Tag values are strings cached per
/// exit reason, so recording allocates nothing; with no listener the cost is one <c>Enabled</c> test per instrument.
/// </summary>
public static class EmulatorMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VmmKit.Vmx.Emulator";

    /// <summary>
    /// Counter of VM exits (and VM-entry failures), tagged <c>reason</c> with the basic exit reason in snake case
    /// (<c>cpuid</c>, <c>io_instruction</c>, <c>ept_violation</c>, <c>entry_failure_invalid_guest_state</c>, ...) or the
    /// decimal number for an unnamed one.
    /// </summary>
    public const string Exits = "vmmkit.emulator.exits";

    /// <summary>Counter of guest instructions retired (a REP string iteration counts as one, as the emulated TSC does).</summary>
    public const string InstructionsRetired = "vmmkit.emulator.instructions_retired";

    private const int ReasonTableSize = 128;

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> ExitCounter = Meter.CreateCounter<long>(Exits, "{exit}", "VM exits of the emulated processor, by basic exit reason");
    private static readonly Counter<long> RetiredCounter = Meter.CreateCounter<long>(InstructionsRetired, "{instruction}", "Guest instructions retired by the emulated processor");
    private static readonly string[] ReasonNames = BuildReasonNames();

    /// <summary>Records one VM entry that ended in <paramref name="exit"/> after retiring <paramref name="retired"/> instructions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Record(in VmExit exit, ulong retired)
    {
        if (ExitCounter.Enabled && exit.Outcome is VmExitOutcome.VmExit or VmExitOutcome.EntryFailure)
            ExitCounter.Add(1, new KeyValuePair<string, object?>("reason", ReasonName((uint)exit.Reason)));
        if (retired != 0 && RetiredCounter.Enabled)
            RetiredCounter.Add((long)retired);
    }

    /// <summary>The <c>reason</c> tag of a basic exit reason.</summary>
    internal static string ReasonName(uint reason) => reason < ReasonTableSize ? ReasonNames[reason] : "other";

    // VmxExitReason's names (SDM Vol. 3D appendix C) in snake case: IoInstruction -> io_instruction.
    private static string[] BuildReasonNames()
    {
        var names = new string[ReasonTableSize];
        for (int i = 0; i < names.Length; i++)
        {
            string? name = Enum.GetName((VmxExitReason)i);
            names[i] = name is null ? i.ToString(System.Globalization.CultureInfo.InvariantCulture) : SnakeCase(name);
        }
        return names;
    }

    private static string SnakeCase(string name)
    {
        var sb = new StringBuilder(name.Length + 4);
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (i > 0 && (char.IsUpper(c) || (char.IsDigit(c) && !char.IsDigit(name[i - 1]))))
                sb.Append('_');
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }
}
