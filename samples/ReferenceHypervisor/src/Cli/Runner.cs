using VmmKit.Boot;

namespace VmmKit.ReferenceHypervisor.Cli;

/// <summary>Builds a one-domain machine for the CLI, runs it, and turns the outcome into an exit status.</summary>
internal static class Runner
{
    /// <summary>Extra machine memory beyond the guest's RAM: EPT tables and hypervisor pages.</summary>
    private const ulong MachineOverheadBytes = 16 << 20;

    /// <summary>Boots <paramref name="kernel"/> and returns the process exit status (<see cref="ExitCodes"/>).</summary>
    public static int Boot(string name, byte[] kernel, IReadOnlyList<PvhModule> modules, ulong memoryMiB, string cmdline, ulong maxInstructions, bool trace, bool stats = false,
        IReadOnlyList<string>? disks = null, bool xenStore = true, int vcpus = 1)
    {
        if (vcpus is < 1 or > Domain.MaxGuestVcpus)
        {
            Console.Error.WriteLine($"vmmkit-hv: --vcpus must be between 1 and {Domain.MaxGuestVcpus}");
            return ExitCodes.StartFailure;
        }

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
        }, xenStore, vcpus);
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
            ulong instructions = 0, exits = 0;
            foreach (var vcpu in domain.Vcpus)
            {
                instructions += vcpu.InstructionsRetired;
                exits += vcpu.ExitCount;
                var top = Enum.GetValues<Vmx.VmxExitReason>().Distinct().Select(r => (Reason: r, Count: vcpu.ExitsFor(r)))
                    .Where(x => x.Count > 0).OrderByDescending(x => x.Count).Take(6).Select(x => $"{x.Reason} {x.Count}");
                Console.Error.WriteLine($"stats: vcpu{vcpu.Id} instructions {vcpu.InstructionsRetired} hypercall operations {vcpu.HypercallOperations} " +
                    $"exits {vcpu.ExitCount} ({string.Join(", ", top)})");
            }

            double seconds = clock.Elapsed.TotalSeconds;
            Console.Error.WriteLine($"stats: instructions {instructions} exits {exits} run {seconds * 1000:F1} ms " +
                $"({instructions / Math.Max(seconds, 1e-9) / 1e6:F1} MIPS)");
        }

        return ExitCodes.For(domain);
    }
}
