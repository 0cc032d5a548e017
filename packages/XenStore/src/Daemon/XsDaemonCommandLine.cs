using System.Globalization;
using VmmKit.XenStore.Store;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// The standalone daemon's arguments: its own (<c>--rundir</c>, the socket path) and xenstored 4.17's, because
/// Xen's xenstored execs a live-update target with its own argv plus <c>-U</c>. The quota options set the
/// global quotas; the rest of xenstored's options are accepted and have no effect here.
/// </summary>
internal sealed class XsDaemonCommandLine
{
    /// <summary>xenstored's run directory when <c>XENSTORED_RUNDIR</c> is unset (XEN_RUN_STORED).</summary>
    public const string DefaultRunDirectory = "/var/run/xenstored";

    public const string Usage =
        "usage: vmmkit-xenstored [-U|--live-update] [--rundir DIR] [xenstored options] [socket-path]\n" +
        "  socket-path       default: $XENSTORED_PATH, else " + XenStoreDaemon.DefaultSocketPath + "\n" +
        "  -U, --live-update restore the state a live update left in DIR/state_dump (ours or xenstored's)\n" +
        "  --rundir DIR      default: $XENSTORED_RUNDIR, else " + DefaultRunDirectory + "\n" +
        "  xenstored's quota options set the global quotas:\n" +
        "    -E, --entry-nb N        nodes per domain          -S, --entry-size N   node size\n" +
        "    -W, --watch-nb N        watches per domain        -t, --transaction N  transactions\n" +
        "    -A, --perm-nb N         permissions per node      -M, --path-max N     path length\n" +
        "    -Q, --quota transaction-nodes|memory|outstanding=N\n" +
        "  accepted and ignored: -D -F FILE -N -P -T FILE -R -I [on|off] -K -V -q WHAT=N -w WHAT=S";

    // xenstored 4.17's options (getopt "DE:F:HI::KNPS:t:A:M:Q:q:T:RVW:w:U"): long name, short letter, argument.
    private static readonly (string Long, char Short, Arg Arg)[] XenOptions =
    [
        ("no-domain-init", 'D', Arg.None), ("entry-nb", 'E', Arg.Required), ("pid-file", 'F', Arg.Required),
        ("no-fork", 'N', Arg.None), ("output-pid", 'P', Arg.None), ("entry-size", 'S', Arg.Required),
        ("trace-file", 'T', Arg.Required), ("transaction", 't', Arg.Required), ("perm-nb", 'A', Arg.Required),
        ("path-max", 'M', Arg.Required), ("quota", 'Q', Arg.Required), ("quota-soft", 'q', Arg.Required),
        ("timeout", 'w', Arg.Required), ("no-recovery", 'R', Arg.None), ("internal-db", 'I', Arg.Optional),
        ("keep-orphans", 'K', Arg.None), ("verbose", 'V', Arg.None), ("watch-nb", 'W', Arg.Required),
    ];

    private enum Arg
    {
        None,
        Required,
        Optional,
    }

    public string SocketPath { get; private set; } = "";

    public string RunDirectory { get; private set; } = "";

    public string StateFile => Path.Combine(RunDirectory, "state_dump");

    public bool LiveUpdate { get; private set; }

    public bool Help { get; private set; }

    /// <summary>Global quotas set by xenstored's quota options.</summary>
    public XenStoreQuotas Quotas { get; } = new();

    /// <summary>True when <paramref name="arg"/> asks for a restore (xenstored's -U).</summary>
    public static bool IsLiveUpdateFlag(string arg) => arg is "-U" or "--live-update";

    public static bool TryParse(string[] args, out XsDaemonCommandLine result, out string? error)
    {
        result = new XsDaemonCommandLine();
        error = null;
        string? socket = null, rundir = null;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (IsLiveUpdateFlag(a))
            {
                result.LiveUpdate = true;
                continue;
            }
            if (a is "-h" or "-H" or "--help")
            {
                result.Help = true;
                continue;
            }
            if (a == "--rundir" && i + 1 < args.Length)
            {
                rundir = args[++i];
                continue;
            }
            if (a.Length > 1 && a[0] == '-')
            {
                if (!TryXenOption(args, ref i, result.Quotas, out error))
                    return false;
                continue;
            }
            if (socket is not null)
            {
                error = $"vmmkit-xenstored: unexpected argument '{a}'";
                return false;
            }
            socket = a;
        }
        result.SocketPath = socket ?? XenStoreDaemon.SocketPathFromEnvironment();
        result.RunDirectory = rundir
            ?? (Environment.GetEnvironmentVariable("XENSTORED_RUNDIR") is { Length: > 0 } d ? d : DefaultRunDirectory);
        return true;
    }

    /// <summary>One of xenstored's options at <paramref name="i"/> (<c>-E 5</c>, <c>-E5</c>, <c>--entry-nb 5</c>, <c>--entry-nb=5</c>).</summary>
    private static bool TryXenOption(string[] args, ref int i, XenStoreQuotas quotas, out string? error)
    {
        error = null;
        string a = args[i];
        (string Long, char Short, Arg Arg) option = default;
        string? value = null;
        bool found = false;
        if (a.StartsWith("--", StringComparison.Ordinal))
        {
            string name = a[2..];
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            foreach (var o in XenOptions)
            {
                if (o.Long == name)
                {
                    option = o;
                    found = true;
                }
            }
        }
        else
        {
            foreach (var o in XenOptions)
            {
                if (o.Short == a[1])
                {
                    option = o;
                    found = true;
                }
            }
            if (found && a.Length > 2)
                value = a[2..];
        }
        if (!found || (option.Arg == Arg.None && value is not null))
        {
            error = $"vmmkit-xenstored: unexpected argument '{a}'";
            return false;
        }
        if (option.Arg == Arg.Required && value is null)
        {
            if (i + 1 >= args.Length)
            {
                error = $"vmmkit-xenstored: option '{a}' needs a value";
                return false;
            }
            value = args[++i];
        }
        else if (option.Arg == Arg.Optional && value is null && i + 1 < args.Length && args[i + 1] is "on" or "off")
        {
            i++;
        }
        string? quota = option.Short switch
        {
            'E' => "nodes",
            'S' => "node-size",
            'W' => "watches",
            't' => "transactions",
            'A' => "permissions",
            'M' => "path-length",
            _ => null,
        };
        if (option.Short == 'Q')
        {
            int eq = value!.IndexOf('=', StringComparison.Ordinal);
            quota = eq > 0 ? value[..eq] : "";
            value = eq > 0 ? value[(eq + 1)..] : "";
            if (quota is not ("transaction-nodes" or "memory" or "outstanding"))
            {
                error = $"vmmkit-xenstored: unknown quota '{quota}'";
                return false;
            }
        }
        if (quota is null)
            return true;
        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long n) || !quotas.TrySet(quota, n))
        {
            error = $"vmmkit-xenstored: bad value '{value}' for '{a}'";
            return false;
        }
        return true;
    }
}
