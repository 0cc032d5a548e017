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
    /// The emulated processor. Its capability MSRs describe what it implements: every VM-execution
    /// control may be set (none is forced on), CR0.PE/PG/NE and CR4.VMXE are fixed to 1 in VMX
    /// operation as on Intel hardware (SDM Appendix A.7, A.8), and the preemption timer counts one
    /// tick per retired instruction (IA32_VMX_MISC[4:0] = 0).
    /// </summary>
    private sealed class EmulatorProcessorProvider : IProcessorProvider
    {
        public VmxCapabilities Capabilities { get; } = VmxCapabilities.FromMsrs(new Dictionary<uint, ulong>
        {
            [VmxCapabilityMsr.Ia32VmxBasic] = (1ul << 55) | (6ul << 50) | (0x1000ul << 32) | 1,   // true controls, WB, 4 KiB VMCS, revision 1
            [VmxCapabilityMsr.Ia32VmxPinbasedCtls] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxProcbasedCtls] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxExitCtls] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxEntryCtls] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxTruePinbasedCtls] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxTrueProcbasedCtls] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxTrueExitCtls] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxTrueEntryCtls] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxProcbasedCtls2] = AllowAll,
            [VmxCapabilityMsr.Ia32VmxMisc] = (1ul << 5) | (1ul << 6) | (1ul << 7),
            [VmxCapabilityMsr.Ia32VmxCr0Fixed0] = 0x8000_0021,
            [VmxCapabilityMsr.Ia32VmxCr0Fixed1] = 0xFFFF_FFFF,
            [VmxCapabilityMsr.Ia32VmxCr4Fixed0] = 0x2000,
            [VmxCapabilityMsr.Ia32VmxCr4Fixed1] = 0x3F_FFFF,
            [VmxCapabilityMsr.Ia32VmxVmcsEnum] = 0x60,
            [VmxCapabilityMsr.Ia32VmxEptVpidCap] = (1ul << 6) | (1ul << 14) | (1ul << 16) | (1ul << 17) | (1ul << 20) | (1ul << 21) | (1ul << 25) | (1ul << 26),
        });

        private const ulong AllowAll = 0xFFFF_FFFFul << 32;

        public IVirtualProcessor Create(MachineMemory memory) => new EmulatedProcessor(memory);
    }
}
