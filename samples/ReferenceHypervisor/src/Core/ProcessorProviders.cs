using VmmKit.Ept;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator;

namespace VmmKit.ReferenceHypervisor;

/// <summary>The processor backends this hypervisor can run on.</summary>
internal static class ProcessorProviders
{
    /// <summary>
    /// The execution tier of the emulated processors <see cref="CreateDefault"/> makes: <c>vmmkit-hv --tier</c>, else the
    /// environment's <c>VMMKIT_EMULATOR_TIER</c> (Interpreter, Translator, LockStep; as the emulator's tests read it), else
    /// the interpreter.
    /// </summary>
    public static ExecutionTier Tier { get; set; } =
        Enum.TryParse(Environment.GetEnvironmentVariable("VMMKIT_EMULATOR_TIER"), ignoreCase: true, out ExecutionTier t) && Enum.IsDefined(t)
            ? t : ExecutionTier.Interpreter;

    /// <summary>The names <c>--tier</c> accepts, lower case, in <see cref="ExecutionTier"/> order.</summary>
    public static readonly string[] TierNames = ["interpreter", "translator", "lockstep"];

    /// <summary>The default backend: VmmKit.Vmx.Emulator's software processor in <see cref="Tier"/>.</summary>
    public static IProcessorProvider CreateDefault() => new EmulatorProcessorProvider(Tier, translationThreshold: null);

    /// <summary>
    /// The emulated processor in <paramref name="tier"/>; with <paramref name="translationThreshold"/> blocks are translated
    /// after that many runs (1 = at first sight). The provider keeps the processors it made (<see cref="EmulatorProcessorProvider.Processors"/>).
    /// </summary>
    public static EmulatorProcessorProvider Create(ExecutionTier tier, int? translationThreshold = null) => new(tier, translationThreshold);

    /// <summary>Parses a <c>--tier</c> value (see <see cref="TierNames"/>).</summary>
    public static bool TryParseTier(string? text, out ExecutionTier tier)
    {
        int i = Array.IndexOf(TierNames, text?.ToLowerInvariant());
        tier = (ExecutionTier)Math.Max(i, 0);
        return i >= 0;
    }

    /// <summary>
    /// The emulated processor, with the capability MSRs it reports (<see cref="EmulatedCapabilities"/>):
    /// controls are adjusted against them, so the VMCS only asks for what it implements. Its
    /// preemption timer ticks once per retired instruction. In lock-step a mismatch between a translated block and the
    /// interpreter is written to stderr when the process ends (the guest goes on with the interpreter's result).
    /// </summary>
    internal sealed class EmulatorProcessorProvider : IProcessorProvider
    {
        private readonly ExecutionTier _tier;
        private readonly int? _threshold;
        private readonly List<EmulatedProcessor> _processors = [];

        public EmulatorProcessorProvider(ExecutionTier tier, int? translationThreshold)
        {
            _tier = tier;
            _threshold = translationThreshold;
        }

        /// <summary>The tier every processor runs in.</summary>
        public ExecutionTier Tier => _tier;

        public VmxCapabilities Capabilities { get; } = EmulatedCapabilities.Create();

        public VmcsHostState HostState => EmulatedHostState.Default;

        /// <summary>The processors made so far, in order.</summary>
        public IReadOnlyList<EmulatedProcessor> Processors => _processors;

        public IVirtualProcessor Create(MachineMemory memory)
        {
            var p = new EmulatedProcessor(memory);
            if (_tier != ExecutionTier.Interpreter)
                p.ExecutionTier = _tier;
            if (_threshold is int t)
                p.TranslationThreshold = t;
            lock (_processors)
            {
                _processors.Add(p);
                if (_tier == ExecutionTier.LockStep && _processors.Count == 1 && _threshold is null)
                    AppDomain.CurrentDomain.ProcessExit += (_, _) => ReportMismatches();
            }
            return p;
        }

        /// <summary>Lock-step: the first mismatch of each processor, or null when there was none.</summary>
        public string? FirstMismatch()
        {
            lock (_processors)
            {
                for (int i = 0; i < _processors.Count; i++)
                {
                    if (_processors[i].LockStepMismatch is string m)
                        return $"processor {i}: {m}";
                }
            }
            return null;
        }

        private void ReportMismatches()
        {
            long checks = 0;
            lock (_processors)
            {
                foreach (var p in _processors)
                    checks += p.LockStepChecks;
            }
            Console.Error.WriteLine(FirstMismatch() is string m
                ? $"vmmkit-hv: lock-step MISMATCH ({checks} translated block runs checked): {m}"
                : $"vmmkit-hv: lock-step: {checks} translated block runs checked, no mismatch");
        }
    }
}
