using System.Diagnostics;
using System.Globalization;

namespace VmmKit.LinuxBoot.Benchmarks;

/// <summary>
/// Times one boot: starts the process a <see cref="ProcessStartInfo"/> describes (a hypervisor's or a toolstack's command
/// line: <c>vmmkit-hv boot</c>, <c>qemu-system-x86_64</c>, later <c>vmmkit-xl create</c>), reads the guest console from its
/// stdout line by line, and notes when the kernel prints "Freeing unused kernel image" and when the shell prints its
/// prompt (<see cref="BootImages.PromptMarker"/>); then kills the process tree, since the shell waits for input forever.
/// </summary>
internal static class BootTiming
{
    /// <summary>The kernel's line once its init sections are freed, just before it runs /init.</summary>
    public const string FreeingMarker = "Freeing unused kernel image";

    /// <summary>
    /// One boot's times from process start (null: not reached before the process ended or the timeout): wall time, and
    /// the processor time the process had used by then (user + system, all its threads), which a loaded machine changes less.
    /// </summary>
    public sealed record Sample(TimeSpan? Freeing, TimeSpan? Prompt, TimeSpan? FreeingCpu, TimeSpan? PromptCpu, string Tail)
    {
        public override string ToString() =>
            $"freeing {Format(Freeing)} (cpu {CpuFormat(Freeing, FreeingCpu)}), prompt {Format(Prompt)} (cpu {CpuFormat(Prompt, PromptCpu)})" +
            (Prompt is null ? $"\n  last console lines:\n{Tail}" : "");
    }

    private static string CpuFormat(TimeSpan? wall, TimeSpan? cpu) => wall is not null && cpu is null ? "n/a" : Format(cpu);

    /// <summary>Medians over the runs, formatted: wall time, then processor time in parentheses.</summary>
    public sealed record Summary(string Freeing, string Prompt);

    /// <summary>
    /// Starts <paramref name="start"/> and times the two milestones; gives up after <paramref name="timeout"/>. With a
    /// <paramref name="startMarker"/> the clock (and the processor time) counts from the line that contains it; the
    /// processor time is then the process's own, not its children's (null: not measured).
    /// </summary>
    public static Sample Measure(ProcessStartInfo start, TimeSpan timeout, string? startMarker = null)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        // The shell reads its console: stdin stays open and empty, so it waits at the prompt instead of seeing EOF.
        start.RedirectStandardInput = true;
        TimeSpan? freeing = null, prompt = null, freeingCpu = null, promptCpu = null;
        bool timedChildren = startMarker is not null; // the boot runs in a child process whose time is not the process's own
        var tail = new Queue<string>();
        var done = new ManualResetEventSlim();
        var clock = Stopwatch.StartNew();
        using var p = new Process { StartInfo = start };
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                done.Set();
                return;
            }

            lock (tail)
            {
                if (startMarker is not null)
                {
                    if (e.Data.Contains(startMarker, StringComparison.Ordinal))
                    {
                        clock.Restart();
                        startMarker = null;
                    }

                    return;
                }

                tail.Enqueue(e.Data);
                if (tail.Count > 12)
                    tail.Dequeue();
                if (freeing is null && e.Data.Contains(FreeingMarker, StringComparison.Ordinal))
                {
                    freeing = clock.Elapsed;
                    freeingCpu = timedChildren ? null : ProcessorTime(p);
                }

                if (prompt is null && e.Data.Contains(BootImages.PromptMarker, StringComparison.Ordinal))
                {
                    prompt = clock.Elapsed;
                    promptCpu = timedChildren ? null : ProcessorTime(p);
                    done.Set();
                }
            }
        };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            lock (tail)
            {
                tail.Enqueue("(stderr) " + e.Data);
                if (tail.Count > 12)
                    tail.Dequeue();
            }
        };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        done.Wait(timeout);
        if (!p.HasExited)
            p.Kill(entireProcessTree: true);
        p.WaitForExit();
        lock (tail)
            return new Sample(freeing, prompt, freeingCpu, promptCpu, string.Join('\n', tail));
    }

    /// <summary>The medians of the samples that reached each milestone ("not reached" when none did).</summary>
    public static Summary Summarize(IReadOnlyList<Sample> samples) =>
        new($"{Median(samples.Select(s => s.Freeing))} ({Cpu(samples.Select(s => s.FreeingCpu))} cpu)",
            $"{Median(samples.Select(s => s.Prompt))} ({Cpu(samples.Select(s => s.PromptCpu))} cpu)");

    /// <summary>The processor-time median, or "n/a" when no sample measured it (a boot timed in a child process).</summary>
    private static string Cpu(IEnumerable<TimeSpan?> values) => values.Any(v => v is not null) ? Median(values) : "n/a";

    /// <summary>The process's processor time so far (/proc/PID/stat), or null once it has gone.</summary>
    private static TimeSpan? ProcessorTime(Process p)
    {
        try
        {
            return p.TotalProcessorTime;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    private static string Median(IEnumerable<TimeSpan?> values)
    {
        var reached = values.Where(v => v is not null).Select(v => v!.Value).Order().ToList();
        return reached.Count == 0 ? "not reached" : Format(reached[reached.Count / 2]);
    }

    private static string Format(TimeSpan? t) =>
        t is { } v ? v.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture) + " s" : "not reached";
}
