using System.Runtime.InteropServices;
using System.Text;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// The last step of a process live update (tools/xenstored/lu.c lu_activate_binary, lu_daemon.c lu_exec):
/// write the state where the new binary will look for it, then execvp it with <c>-U</c>. Sockets handed over
/// have FD_CLOEXEC clear, so they stay open in the new image; everything .NET opened itself is closed.
/// </summary>
internal static unsafe class XsExec
{
    [DllImport("libc", SetLastError = true)]
    private static extern int execvp(byte* file, byte** argv);

    /// <summary>Replaces the process. Returns only on failure, with the reason.</summary>
    public static string ReplaceProcess(XsLiveUpdate session, string[] currentArgs, string stateFile, byte[] state)
    {
        try
        {
            if (Path.GetDirectoryName(stateFile) is { Length: > 0 } dir)
                Directory.CreateDirectory(dir);
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using (var f = new FileStream(stateFile, options))
            {
                f.Write(state);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"Dump state open error ({e.Message})";
        }
        var argv = Arguments(session, currentArgs);
        // execve replaces the process image without .NET's shutdown: output still buffered in this process's own
        // stdio writers would be lost. This is about the process's stdio file descriptors (which the new image
        // inherits), not library logging, so it is the one place the package touches Console.
        Console.Out.Flush();
        Console.Error.Flush();
        int errno = Exec(session.FileName, argv);
        File.Delete(stateFile);
        return $"Error activating new binary (errno {errno}).";
    }

    /// <summary>
    /// True when a live-update target is another vmmkit-xenstored (its file name starts with
    /// <c>vmmkit-xenstored</c>, after following links, or it is this process's own executable). Only such a
    /// target is accepted: Xen's xenstored 4.17 reads the migration stream <see cref="XsXenStateFormat"/>
    /// writes but then crashes without a dom0 ring record and an event-channel fd, which this daemon has not
    /// got, so handing the store to it would lose the store.
    /// </summary>
    public static bool IsOurs(string fileName)
    {
        try
        {
            var file = new FileInfo(fileName);
            var resolved = file.ResolveLinkTarget(returnFinalTarget: true) as FileInfo ?? file;
            if (resolved.Name.StartsWith("vmmkit-xenstored", StringComparison.Ordinal) || file.Name.StartsWith("vmmkit-xenstored", StringComparison.Ordinal))
                return true;
            return Environment.ProcessPath is { } self && Path.GetFileName(self) != "dotnet"
                && string.Equals(Path.GetFullPath(resolved.FullName), Path.GetFullPath(self), StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return false;
        }
    }

    /// <summary>
    /// The new binary's argv: its file name, then the <c>-c</c> command line split on blanks or else the
    /// current arguments, with <c>-U</c> added unless present.
    /// </summary>
    public static List<string> Arguments(XsLiveUpdate session, string[] currentArgs)
    {
        var argv = new List<string> { session.FileName };
        if (session.CommandLine is { } cmdline)
            argv.AddRange(cmdline.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries));
        else
            argv.AddRange(currentArgs);
        if (!argv.Skip(1).Any(XsDaemonCommandLine.IsLiveUpdateFlag))
            argv.Add("-U");
        return argv;
    }

    private static int Exec(string file, List<string> argv)
    {
        var strings = new List<nint>();
        byte** vector = (byte**)NativeMemory.AllocZeroed((nuint)(argv.Count + 1), (nuint)sizeof(byte*));
        try
        {
            byte* path = Utf8(file, strings);
            for (int i = 0; i < argv.Count; i++)
                vector[i] = Utf8(argv[i], strings);
            _ = execvp(path, vector);
            return Marshal.GetLastPInvokeError();
        }
        finally
        {
            foreach (var p in strings)
                NativeMemory.Free((void*)p);
            NativeMemory.Free(vector);
        }
    }

    private static byte* Utf8(string s, List<nint> owned)
    {
        int n = Encoding.UTF8.GetByteCount(s);
        byte* p = (byte*)NativeMemory.Alloc((nuint)n + 1);
        owned.Add((nint)p);
        Encoding.UTF8.GetBytes(s, new Span<byte>(p, n));
        p[n] = 0;
        return p;
    }
}
