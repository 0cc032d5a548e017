namespace VmmKit.TestSupport;

/// <summary>
/// Finds a Debian tool a test needs. A missing tool is a test failure (never a silent skip),
/// with the apt package to install in the message; <c>./test.sh</c> installs them all.
/// </summary>
public static class RequiredTool
{
    /// <summary>True when running under CI (<c>CI=true</c>).</summary>
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Returns the full path of <paramref name="command"/> on PATH, or fails naming <paramref name="debianPackage"/>.</summary>
    public static string Require(string command, string debianPackage)
    {
        return Find(command) ?? throw new InvalidOperationException(
            $"'{command}' is not installed; run ./test.sh (it installs the prerequisites) or 'apt-get install -y {debianPackage}'.");
    }

    /// <summary>Fails naming <paramref name="debianPackage"/> unless <paramref name="path"/> exists.</summary>
    public static string RequireFile(string path, string debianPackage)
    {
        if (!File.Exists(path))
            throw new InvalidOperationException($"'{path}' is missing; run ./test.sh or 'apt-get install -y {debianPackage}'.");
        return path;
    }

    /// <summary>Returns the full path of <paramref name="command"/> on PATH (or /usr/sbin, /sbin), or null.</summary>
    public static string? Find(string command)
    {
        if (command.Contains('/'))
            return File.Exists(command) ? command : null;
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
        foreach (var d in dirs)
        {
            string p = Path.Combine(d, command);
            if (File.Exists(p))
                return p;
        }
        return null;
    }
}
