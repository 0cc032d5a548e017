using BenchmarkDotNet.Running;
using VmmKit.GrantTable.Benchmarks;

// `--interleaved`: memcpy and GNTTABOP_copy rounds alternate and the fastest round of each is reported; on a shared
// machine this is steadier than BenchmarkDotNet's separate runs. Everything else goes to BenchmarkDotNet.
if (args is ["--interleaved", ..])
{
    Interleaved.Run(Console.Out);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
