using VmmKit.Ept;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator;

namespace VmmKit.ReferenceHypervisor;

/// <summary>The processor backends this hypervisor can run on.</summary>
internal static class ProcessorProviders
{
    /// <summary>The default backend: VmmKit.Vmx.Emulator's software processor.</summary>
    public static IProcessorProvider CreateDefault() => new EmulatorProcessorProvider();

    /// <summary>
    /// The emulated processor, with the capability MSRs it reports (<see cref="EmulatedCapabilities"/>):
    /// controls are adjusted against them, so the VMCS only asks for what it implements. Its
    /// preemption timer ticks once per retired instruction.
    /// </summary>
    private sealed class EmulatorProcessorProvider : IProcessorProvider
    {
        public VmxCapabilities Capabilities { get; } = EmulatedCapabilities.Create();

        public VmcsHostState HostState => EmulatedHostState.Default;

        /// <summary>The execution tier: <c>VMMKIT_EMULATOR_TIER</c> (Interpreter, Translator, LockStep), else the interpreter.</summary>
        private static readonly ExecutionTier Tier =
            Enum.TryParse(Environment.GetEnvironmentVariable("VMMKIT_EMULATOR_TIER"), ignoreCase: true, out ExecutionTier t) && Enum.IsDefined(t) ? t : ExecutionTier.Interpreter;

        public IVirtualProcessor Create(MachineMemory memory) => new EmulatedProcessor(memory) { ExecutionTier = Tier };
    }
}
