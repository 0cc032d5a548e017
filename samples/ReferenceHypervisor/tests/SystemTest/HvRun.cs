using VmmKit.Boot;

namespace VmmKit.ReferenceHypervisor.Tests.SystemTest;

/// <summary>Boots a kernel on vmmkit-hv's machine in this process (what <c>vmmkit-hv boot</c> does) and collects the outcome.</summary>
public static class HvRun
{
    /// <summary>A vmmkit-hv run's outcome: the console transcript, the CLI's exit status for it, and the crash dump if any.</summary>
    public sealed record Result(string Transcript, int ExitCode, string? CrashReport, ulong Instructions);

    /// <summary>
    /// Boots <paramref name="kernel"/> with <paramref name="memoryMiB"/> of guest RAM and an instruction budget, with the
    /// files in <paramref name="modules"/> as boot modules (the first is Linux's initramfs) and, unless
    /// <paramref name="xenStore"/> is false, a XenStore ring (<c>vmmkit-hv boot --no-xenstore</c> otherwise), and the raw
    /// images in <paramref name="disks"/> as xvda, xvdb, ... (<c>vmmkit-hv boot --disk</c>), with <paramref name="vcpus"/>
    /// vCPUs (<c>vmmkit-hv boot --vcpus</c>; the budget is per vCPU, <see cref="Result.Instructions"/> is vCPU 0's).
    /// </summary>
    public static Result Boot(string kernel, ulong maxInstructions, ulong memoryMiB = 64, string cmdline = "",
        IReadOnlyList<string>? modules = null, bool xenStore = true, IReadOnlyList<string>? disks = null, int vcpus = 1)
    {
        using var machine = new Machine((memoryMiB + 16) << 20, ProcessorProviders.CreateDefault()) { MaxInstructionsPerVcpu = maxInstructions };
        var mods = (modules ?? []).Select(m => new PvhModule(File.ReadAllBytes(m), Path.GetFileName(m))).ToList();
        var config = new DomainConfig(Path.GetFileName(kernel), File.ReadAllBytes(kernel), memoryMiB << 20, cmdline, mods, XenStore: xenStore, Vcpus: vcpus);
        if (!machine.TryCreateDomain(config, out var domain, out string error))
            return new Result("", Cli.ExitCodes.StartFailure, error, 0);
        for (int i = 0; i < (disks?.Count ?? 0); i++)
            machine.Pv!.AddDisk(domain!, disks![i], $"xvd{(char)('a' + i)}");
        machine.Run();
        return new Result(domain!.Console.Transcript, Cli.ExitCodes.For(domain), domain.CrashReport, domain.Vcpus[0].InstructionsRetired);
    }
}
