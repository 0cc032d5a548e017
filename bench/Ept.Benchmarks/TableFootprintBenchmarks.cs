using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using VmmKit.Ept;

namespace VmmKit.Ept.Benchmarks;

/// <summary>
/// Maps 16 GiB of guest-physical memory and reports the bytes of EPT paging structures it takes, next to the
/// minimum any 4-level EPT needs for the same page sizes. Machine frames are aligned to 1 GiB, to 2 MiB only,
/// or misaligned (4 KiB pages only). The timed part is the <see cref="EptTables.Map"/> call.
/// </summary>
[Config(typeof(FootprintConfig))]
public class TableFootprintBenchmarks
{
    private const ulong GuestBytes = 16UL << 30;
    private static readonly FrameOwner Dom = new(1);

    private MachineMemory _memory = null!;
    private EptTables _ept = null!;

    /// <summary>Alignment of the machine frames backing the guest.</summary>
    [Params("1G", "2M", "4K")]
    public string Alignment { get; set; } = "1G";

    [IterationSetup]
    public void Setup()
    {
        _memory = new MachineMemory(GuestBytes + (2UL << 30));
        _ept = new EptTables(_memory, Dom);
    }

    [IterationCleanup]
    public void Cleanup()
    {
        _ept.Dispose();
        _memory.Dispose();
    }

    [Benchmark(Description = "Map 16 GiB")]
    public ulong Map16GiB() => MapAll(_ept, Alignment);

    internal static ulong MapAll(EptTables ept, string alignment)
    {
        ulong firstFrame = alignment switch
        {
            "1G" => 1UL << 18,
            "2M" => (1UL << 18) + 512,
            _ => (1UL << 18) + 1,
        };
        ept.Map(new GuestPhysicalAddress(0), new MachineFrameNumber(firstFrame), GuestBytes >> Page.PageShift, EptAccess.ReadWriteExecute);
        return ept.TableFrameCount;
    }

    /// <summary>Frames a 4-level EPT needs at least: one PML4, one PDPT per 512 GiB, one PD per GiB unless 1 GiB pages are used, one PT per 2 MiB unless large pages are used.</summary>
    internal static ulong MinimumFrames(string alignment)
    {
        ulong gib = GuestBytes >> 30;
        ulong frames = 1 + ((gib + 511) / 512);
        if (alignment != "1G")
        {
            frames += gib;
        }

        if (alignment == "4K")
        {
            frames += GuestBytes >> 21;
        }

        return frames;
    }

    private sealed class FootprintConfig : ManualConfig
    {
        public FootprintConfig()
        {
            AddColumn(new FootprintColumn("EPT table bytes", minimum: false));
            AddColumn(new FootprintColumn("Minimum bytes", minimum: true));
        }
    }

    private sealed class FootprintColumn(string name, bool minimum) : IColumn
    {
        public string Id => name;

        public string ColumnName => name;

        public bool AlwaysShow => true;

        public ColumnCategory Category => ColumnCategory.Custom;

        public int PriorityInCategory => minimum ? 1 : 0;

        public bool IsNumeric => true;

        public UnitType UnitType => UnitType.Size;

        public string Legend => minimum ? "Least EPT paging-structure bytes any 4-level EPT needs for these page sizes" : "EPT paging-structure bytes used by EptTables after mapping 16 GiB";

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            string alignment = (string)benchmarkCase.Parameters["Alignment"];
            ulong frames;
            if (minimum)
            {
                frames = MinimumFrames(alignment);
            }
            else
            {
                using var memory = new MachineMemory(GuestBytes + (2UL << 30));
                using var ept = new EptTables(memory, Dom);
                frames = MapAll(ept, alignment);
            }

            return $"{frames * 4096:N0} B ({frames} frames)";
        }

        public bool IsAvailable(Summary summary) => true;

        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    }
}
