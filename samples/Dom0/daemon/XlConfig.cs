using System.Globalization;
using System.Text.RegularExpressions;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// The xl.cfg subset vmmkit-xl accepts (xl.cfg(5)): name, type ("pvh" only), kernel, ramdisk, cmdline (or extra),
/// memory (MiB), vcpus, on_poweroff/on_reboot/on_crash (destroy, restart or preserve), and disk (raw images, see <see cref="DiskSpec"/>; each served by Dom0's block backend).
/// Relative paths are resolved against the file's directory.
/// </summary>
internal sealed partial record XlConfig(string Name, string Kernel, string? Ramdisk, string Cmdline, ulong MemoryMiB, uint Vcpus,
    string OnPoweroff, string OnReboot, string OnCrash, IReadOnlyList<DiskSpec> Disks)
{
    /// <summary>Parses <paramref name="text"/>; a reason in <paramref name="error"/> when it is not a config this toolstack can build.</summary>
    public static XlConfig? Parse(string text, string directory, out string error)
    {
        var values = new Dictionary<string, object>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (string raw in text.Split('\n'))
        {
            lineNo++;
            string line = StripComment(raw).Trim();
            if (line.Length == 0)
                continue;
            var m = Assignment().Match(line);
            if (!m.Success)
            {
                error = $"line {lineNo}: expected key = value";
                return null;
            }

            string value = m.Groups[2].Value.Trim().TrimEnd(';');
            if (value.StartsWith('['))
            {
                var items = Quoted().Matches(value).Select(q => q.Groups[2].Value).ToList();
                values[m.Groups[1].Value] = items;
            }
            else if (Quoted().Match(value) is { Success: true } q && q.Index == 0)
            {
                values[m.Groups[1].Value] = q.Groups[2].Value;
            }
            else if (long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n))
            {
                values[m.Groups[1].Value] = n;
            }
            else
            {
                error = $"line {lineNo}: cannot parse the value of {m.Groups[1].Value}";
                return null;
            }
        }

        string? S(string key) => values.TryGetValue(key, out var v) ? v as string : null;
        long? N(string key) => values.TryGetValue(key, out var v) && v is long n ? n : null;
        string type = S("type") ?? (S("builder") is "hvm" ? "hvm" : "pv");
        if (type != "pvh")
        {
            error = $"type \"{type}\" is not supported: only type=\"pvh\"";
            return null;
        }

        if (S("kernel") is not { } kernel)
        {
            error = "kernel is required";
            return null;
        }

        long memory = N("memory") ?? 128;
        long vcpus = N("vcpus") ?? 1;
        if (memory is < 1 or > 4096 || vcpus is < 1 or > MaxVcpus)
        {
            error = memory is < 1 or > 4096 ? "memory must be 1..4096 MiB" : $"vcpus must be 1..{MaxVcpus}";
            return null;
        }

        foreach (string key in (string[])["on_poweroff", "on_reboot", "on_crash"])
        {
            if (S(key) is { } action && action is not ("destroy" or "restart" or "preserve"))
            {
                error = $"{key} = \"{action}\" is not supported: destroy, restart or preserve";
                return null;
            }
        }

        string Resolve(string p) => Path.IsPathRooted(p) ? p : Path.GetFullPath(Path.Combine(directory, p));
        var disks = new List<DiskSpec>();
        try
        {
            foreach (string spec in values.TryGetValue("disk", out var d) && d is List<string> specs ? specs : [])
                disks.Add(DiskSpec.Parse(spec, directory));
        }
        catch (FormatException e)
        {
            error = e.Message;
            return null;
        }

        error = "";
        return new XlConfig(S("name") ?? Path.GetFileNameWithoutExtension(kernel), Resolve(kernel), S("ramdisk") is { } rd ? Resolve(rd) : null,
            S("cmdline") ?? S("extra") ?? "", (ulong)memory, (uint)vcpus, S("on_poweroff") ?? "destroy", S("on_reboot") ?? "restart",
            S("on_crash") ?? "destroy", disks) { Text = text, Directory = directory };
    }

    /// <summary>The most vCPUs a domain may have (the MADT entries that fit in the ACPI tables' page).</summary>
    public const int MaxVcpus = VmmKit.ReferenceHypervisor.Cpu.AcpiTables.MaxVcpus;

    /// <summary>The file's text (kept so that on_*="restart" and a restarted Dom0 can build the domain again).</summary>
    public string Text { get; init; } = "";

    /// <summary>The directory relative paths were resolved against.</summary>
    public string Directory { get; init; } = "";

    private static string StripComment(string line)
    {
        bool single = false, dbl = false;
        for (int i = 0; i < line.Length; i++)
        {
            char c = line[i];
            if (c == '\'' && !dbl)
                single = !single;
            else if (c == '"' && !single)
                dbl = !dbl;
            else if (c == '#' && !single && !dbl)
                return line[..i];
        }

        return line;
    }

    [GeneratedRegex(@"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")]
    private static partial Regex Assignment();

    [GeneratedRegex(@"(['""])(.*?)\1")]
    private static partial Regex Quoted();
}
