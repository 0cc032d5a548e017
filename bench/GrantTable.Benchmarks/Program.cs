using BenchmarkDotNet.Running;
using VmmKit.GrantTable.Benchmarks;

// `--interleaved [RUNS [into]]`: memcpy, GNTTABOP_copy and protocol-floor rounds (in Xen's order and in window order)
// alternate and the fastest round of each is reported, for every shape, RUNS times (default 1) with a summary (median
// and range) at the end; on a shared machine this is steadier than BenchmarkDotNet's separate runs. With `into` the
// copies go from the backend's frames into the grants (GNTCOPY_dest_gref) instead of out of them.
// `--cpu LENGTH BATCH PAGES [copy|memcpy|hypercall]`: memcpy and GNTTABOP_copy in turn (or only the one named), three times, as
// process CPU time per operation (for profiling with perf, and on a loaded machine where wall time mostly measures the
// other processes). `--parallel [THREADS]`: THREADS backends (default: one per processor) copying at the same time on one
// host, beside as many threads doing memcpy. Everything else goes to BenchmarkDotNet.
if (args is ["--interleaved", .. var options] && options is [] or [_] or [_, "into"])
{
    Interleaved.Run(Console.Out, options.Length > 0 ? int.Parse(options[0]) : 1, intoGrant: options is [_, "into"]);
    return;
}

if (args is ["--cpu", var length, var batch, var pages, .. var rest] && rest is [] or ["copy" or "memcpy" or "hypercall"])
{
    CpuTime.Run(Console.Out, int.Parse(length), int.Parse(batch), int.Parse(pages), rest.Length == 1 ? rest[0] : null);
    return;
}

if (args is ["--parallel", .. var threads] && threads is [] or [_])
{
    ParallelCopy.Run(Console.Out, threads.Length == 1 ? int.Parse(threads[0]) : Environment.ProcessorCount);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
