using BenchmarkDotNet.Running;
using VmmKit.ReferenceHypervisor.Benchmarks;

// dotnet run -c Release --project bench/ReferenceHypervisor.Benchmarks -- <mode>
//   startup [runs]        process start to the demo guest's first console line, JIT and NativeAOT
//   compare [iterations] [intbench-iterations]
//                         the workload and intbench guests' instruction rates under vmmkit-hv and QEMU TCG
//   anything else         BenchmarkDotNet (e.g. --filter '*HypercallRoundTrip*')
string repo = FindRepo();
if (args.Length > 0 && args[0] == "startup")
    return WholeGuestMeasurements.Startup(repo, args.Length > 1 ? int.Parse(args[1]) : 11);
if (args.Length > 0 && args[0] == "compare")
    return WholeGuestMeasurements.CompareWithQemu(repo, args.Length > 1 ? int.Parse(args[1]) : 300, args.Length > 2 ? int.Parse(args[2]) : 1000);
BenchmarkSwitcher.FromAssembly(typeof(HypercallRoundTripBenchmark).Assembly).Run(args);
return 0;

static string FindRepo()
{
    for (var d = new DirectoryInfo(Environment.CurrentDirectory); d is not null; d = d.Parent)
    {
        if (File.Exists(Path.Combine(d.FullName, "Packages.sln")))
            return d.FullName;
    }

    throw new InvalidOperationException("run from inside the repository");
}
