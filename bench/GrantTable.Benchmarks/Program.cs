using BenchmarkDotNet.Running;
using VmmKit.GrantTable.Benchmarks;

// `--interleaved [RUNS]`: memcpy, GNTTABOP_copy and protocol-floor rounds (in Xen's order and in window order)
// alternate and the fastest round of each is reported, for every shape, RUNS times (default 1) with a summary (median
// and range) at the end; on a shared machine this is steadier than BenchmarkDotNet's separate runs.
// `--cpu LENGTH BATCH PAGES [copy|memcpy|hypercall]`: memcpy and GNTTABOP_copy in turn (or only the one named), three times, as
// process CPU time per operation (for profiling with perf, and on a loaded machine where wall time mostly measures the
// other processes). Everything else goes to BenchmarkDotNet.
if (args is ["--interleaved", ..])
{
    Interleaved.Run(Console.Out, args.Length > 1 ? int.Parse(args[1]) : 1);
    return;
}

if (args is ["--cpu", var length, var batch, var pages, .. var rest] && rest is [] or ["copy" or "memcpy" or "hypercall"])
{
    CpuTime.Run(Console.Out, int.Parse(length), int.Parse(batch), int.Parse(pages), rest.Length == 1 ? rest[0] : null);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
