namespace VmmKit.TestSupport;

/// <summary>
/// Binaries of Debian's xen-utils-4.17 the tests use as oracles (Xen's own <c>xenstored</c>,
/// <c>xenstore-control</c>). Installing that package would pull in systemd and Xen's init scripts, so
/// <c>./test.sh</c> unpacks it into <c>artifacts/debian/xen-utils</c> instead; an installed copy under
/// /usr/lib/xen-4.17/bin or one under <c>VMMKIT_XEN_UTILS_ROOT</c> is used too. Missing = failure, never a skip.
/// </summary>
public static class XenUtils
{
    /// <summary>The full path of <paramref name="name"/> from xen-utils-4.17, or an exception saying how to get it.</summary>
    public static string Require(string name)
    {
        string relative = "usr/lib/xen-4.17/bin/" + name;
        var candidates = new List<string> { "/" + relative };
        if (Environment.GetEnvironmentVariable("VMMKIT_XEN_UTILS_ROOT") is { Length: > 0 } root)
            candidates.Add(Path.Combine(root, relative));
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            candidates.Add(Path.Combine(dir.FullName, "artifacts/debian/xen-utils", relative));
        foreach (var c in candidates)
        {
            if (File.Exists(c))
                return c;
        }
        throw new InvalidOperationException(
            $"{name} (Debian xen-utils-4.17) is missing; ./test.sh unpacks it into artifacts/debian/xen-utils.");
    }
}
