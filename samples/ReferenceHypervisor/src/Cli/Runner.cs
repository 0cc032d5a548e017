using VmmKit.Boot;

namespace VmmKit.ReferenceHypervisor.Cli;

/// <summary>Builds a one-domain machine for the CLI, runs it, and turns the outcome into an exit status.</summary>
internal static class Runner
{
    /// <summary>Extra machine memory beyond the guest's RAM: EPT tables and hypervisor pages.</summary>
    private const ulong MachineOverheadBytes = 16 << 20;

    /// <summary>Boots <paramref name="kernel"/> and returns the process exit status (<see cref="ExitCodes"/>).</summary>
    public static int Boot(string name, byte[] kernel, IReadOnlyList<PvhModule> modules, ulong memoryMiB, string cmdline, ulong maxInstructions, bool trace, bool stats = false,
        IReadOnlyList<string>? disks = null, bool xenStore = true)
    {
        if (memoryMiB is 0 or > 4096)
        {
            Console.Error.WriteLine("vmmkit-hv: --memory must be between 1 and 4096 MiB");
            return ExitCodes.StartFailure;
        }

        var stdout = Console.OpenStandardOutput();
        using var machine = new Machine((memoryMiB << 20) + MachineOverheadBytes, ProcessorProviders.CreateDefault())
        {
            Logger = message => Console.Error.WriteLine(message),
            MaxInstructionsPerVcpu = maxInstructions,
        };
        if (trace)
            machine.Trace = (vcpu, exit) => Console.Error.WriteLine($"(trace) d{vcpu.Domain.Id}v{vcpu.Id} rip {vcpu.Vmcs.Read(Vmx.VmcsField.GuestRip):x8} {exit}");

        var config = new DomainConfig(name, kernel, memoryMiB << 20, cmdline, modules, line =>
        {
            stdout.Write(System.Text.Encoding.Latin1.GetBytes(line));
            stdout.Flush();
        }, xenStore);
        if (!machine.TryCreateDomain(config, out var domain, out string error))
        {
            Console.Error.WriteLine($"vmmkit-hv: cannot boot {name}: {error}");
            return ExitCodes.StartFailure;
        }

        // Disks as xl's disk=['format=raw,vdev=xvdX,access=rw,target=PATH'], served by the in-process blkback (src/Pv).
        for (int i = 0; i < (disks?.Count ?? 0); i++)
        {
            try
            {
                machine.Pv!.AddDisk(domain!, disks![i], $"xvd{(char)('a' + i)}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"vmmkit-hv: cannot open disk {disks![i]}: {e.Message}");
                return ExitCodes.StartFailure;
            }
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        machine.Run();
        clock.Stop();
        domain!.Console.Flush();
        if (stats)
        {
            var vcpu = domain.Vcpus[0];
            double seconds = clock.Elapsed.TotalSeconds;
            Console.Error.WriteLine($"stats: instructions {vcpu.InstructionsRetired} exits {vcpu.ExitCount} run {seconds * 1000:F1} ms " +
                $"({vcpu.InstructionsRetired / Math.Max(seconds, 1e-9) / 1e6:F1} MIPS)");
        }

        return ExitCodes.For(domain);
    }
}
