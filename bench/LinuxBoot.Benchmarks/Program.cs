using VmmKit.LinuxBoot.Benchmarks;

// dotnet run -c Release --project bench/LinuxBoot.Benchmarks -- [runs]
//   Boots Debian's Linux (vmlinux from linux-image-amd64) with a busybox initramfs whose /init starts a shell, and
//   reports the wall time from process start to "Freeing unused kernel image" and to the shell's prompt, for
//   vmmkit-hv (interpreter and translator tiers), QEMU TCG, and vmmkit-xl create on a host with the Dom0 process (from
//   the moment xl starts), each run `runs` times (median).
int runs = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 3;
string repo = FindRepo();
BootImages? images = null;
try
{
    images = BootImages.Prepare();
    var targets = BootTargets.All(repo, images);
    var results = new List<(string Name, BootTiming.Summary Summary)>();
    foreach (var target in targets)
    {
        var samples = new List<BootTiming.Sample>();
        for (int i = 0; i < runs; i++)
        {
            var s = BootTiming.Measure(target.Start, BootTargets.Timeout, target.StartMarker);
            Console.Error.WriteLine($"{target.Name} run {i + 1}: {s}");
            samples.Add(s);
        }

        results.Add((target.Name, BootTiming.Summarize(samples)));
    }

    Console.WriteLine($"Debian {Path.GetFileName(images.Vmlinux)}, {runs} run(s) each, median wall time from process start (processor time used by then):");
    Console.WriteLine($"| {"boot",-52} | {"to \"Freeing unused kernel image\"",-34} | {"to the shell prompt",-26} |");
    Console.WriteLine($"| {new string('-', 52)} | {new string('-', 34)} | {new string('-', 26)} |");
    foreach (var (name, summary) in results)
        Console.WriteLine($"| {name,-52} | {summary.Freeing,-34} | {summary.Prompt,-26} |");
    return 0;
}
catch (InvalidOperationException e)
{
    Console.Error.WriteLine($"linux-boot bench: {e.Message}");
    return 1;
}
finally
{
    if (images is not null)
        File.Delete(images.Initramfs);
}

static string FindRepo()
{
    for (var d = new DirectoryInfo(Environment.CurrentDirectory); d is not null; d = d.Parent)
    {
        if (File.Exists(Path.Combine(d.FullName, "Packages.sln")))
            return d.FullName;
    }

    throw new InvalidOperationException("run from inside the repository");
}
