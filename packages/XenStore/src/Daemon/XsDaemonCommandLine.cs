namespace VmmKit.XenStore.Daemon;

/// <summary>The standalone daemon's arguments (a subset of xenstored's, plus the socket path).</summary>
internal sealed class XsDaemonCommandLine
{
    /// <summary>xenstored's run directory when <c>XENSTORED_RUNDIR</c> is unset (XEN_RUN_STORED).</summary>
    public const string DefaultRunDirectory = "/var/run/xenstored";

    public const string Usage =
        "usage: vmmkit-xenstored [-U|--live-update] [--rundir DIR] [socket-path]\n" +
        "  socket-path       default: $XENSTORED_PATH, else " + XenStoreDaemon.DefaultSocketPath + "\n" +
        "  -U, --live-update restore the state a live update left in DIR/state_dump\n" +
        "  --rundir DIR      default: $XENSTORED_RUNDIR, else " + DefaultRunDirectory;

    public string SocketPath { get; private set; } = "";

    public string RunDirectory { get; private set; } = "";

    public string StateFile => Path.Combine(RunDirectory, "state_dump");

    public bool LiveUpdate { get; private set; }

    public bool Help { get; private set; }

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
                result.LiveUpdate = true;
            else if (a is "-h" or "--help")
                result.Help = true;
            else if (a == "--rundir" && i + 1 < args.Length)
                rundir = args[++i];
            else if (a.StartsWith('-') || socket is not null)
            {
                error = $"vmmkit-xenstored: unexpected argument '{a}'";
                return false;
            }
            else
                socket = a;
        }
        result.SocketPath = socket ?? XenStoreDaemon.SocketPathFromEnvironment();
        result.RunDirectory = rundir
            ?? (Environment.GetEnvironmentVariable("XENSTORED_RUNDIR") is { Length: > 0 } d ? d : DefaultRunDirectory);
        return true;
    }
}
