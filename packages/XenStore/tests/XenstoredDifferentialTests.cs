using VmmKit.XenStore.Tests.XenOracle;
using VmmKit.XenStore.Wire;
using T = VmmKit.XenStore.Wire.XsMessageType;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// Differential tests against Xen's own xenstored 4.17 (Debian xen-utils-4.17) run under the fake-Xen
/// LD_PRELOAD shim: the same raw frames go to both daemons, every reply and watch event must match.
/// </summary>
public class XenstoredDifferentialTests
{
    private static string S(params string[] parts) => string.Concat(parts.Select(p => p + "\0"));

    [Fact]
    public async Task Smoke_socket_and_rings()
    {
        await using var d = await XsDifferential.StartAsync();
        await d.SendAsync("dom0", T.Directory, S("/"));
        await d.SendAsync("dom0", T.Write, "/a/b\0hello");
        await d.SendAsync("dom0", T.Read, S("/a/b"));
        d.CreateDomain(1);
        await d.SendAsync("dom0", T.Mkdir, S("/local/domain/1"));
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/1", "n1"));
        await d.IntroduceAsync("dom0", "d1", 1);
        await d.SendAsync("d1", T.Write, "x\0y");
        await d.SendAsync("d1", T.Read, S("x"));
        await d.SendAsync("d1", T.Read, S("/a/b"));
        await d.SendAsync("d1", T.GetPerms, S("x"));
    }
}
