using VmmKit.Vmx.Tests.Bochs;

namespace VmmKit.Vmx.Tests;

/// <summary>Shared Bochs runs: one boot per CPU model dumps the capability MSRs; they are cached for the other tests.</summary>
internal static class BochsHarness
{
    public const string Haswell = "corei7_haswell_4770";
    public const string Skylake = "corei7_skylake_x";

    private static readonly Dictionary<string, HarnessLog> Capabilities = [];
    private static readonly Lock Gate = new();

    /// <summary>Boots <paramref name="cpuModel"/> with no cases and returns the logged capability MSRs.</summary>
    public static HarnessLog CapabilityDump(string cpuModel)
    {
        lock (Gate)
        {
            if (!Capabilities.TryGetValue(cpuModel, out var log))
            {
                var image = VmxHarnessImage.Build([], memory: null);
                log = HarnessLog.Parse(BochsMachine.Run(image, cpuModel));
                Capabilities[cpuModel] = log;
            }
            return log;
        }
    }

    public static VmxCapabilities CapabilitiesOf(string cpuModel) => VmxCapabilities.FromMsrs(CapabilityDump(cpuModel).Msrs);

    /// <summary>The exiting controls the harness guest exercises.</summary>
    public const PrimaryProcessorBasedControls GuestExits = PrimaryProcessorBasedControls.HltExiting | PrimaryProcessorBasedControls.UnconditionalIoExiting |
        PrimaryProcessorBasedControls.Cr3LoadExiting | PrimaryProcessorBasedControls.Cr3StoreExiting | PrimaryProcessorBasedControls.MovDrExiting |
        PrimaryProcessorBasedControls.InvlpgExiting | PrimaryProcessorBasedControls.RdtscExiting;

    /// <summary>Exceptions that exit: #BP (3), #UD (6), #GP (13).</summary>
    public const uint GuestExceptions = (1u << 3) | (1u << 6) | (1u << 13);

    /// <summary>The valid PVH guest VMCS the harness runs (host state = the stub's).</summary>
    public static Vmcs ValidPvhVmcs(VmxCapabilities caps, HarnessGuest guest)
    {
        var vmcs = new Vmcs();
        VmcsBuilder.SetPvh32Guest(vmcs, caps, guest.Ept.Pointer, HarnessGuest.EntryPoint, GuestExits);
        VmcsBuilder.SetHostState(vmcs, VmxHarnessImage.HostState);
        vmcs.Write(VmcsField.ExceptionBitmap, GuestExceptions);
        return vmcs;
    }
}
