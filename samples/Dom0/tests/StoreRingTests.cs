using VmmKit.ReferenceHypervisor.Tests;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// xenstored in the Dom0 process serves a guest's store ring: the toolstack's XS_INTRODUCE has it foreign-map the ring
/// (HVM_PARAM_STORE_PFN) and bind the store event channel, so the blkfront C guest's XenStore requests get answers.
/// </summary>
public sealed class StoreRingTests
{
    [Fact]
    public void A_guest_created_by_xl_gets_its_XenStore_replies_on_its_store_ring()
    {
        using var host = XlTests.StartHostWithDom0();
        var (code, _, stderr) = XlTests.Xl(host, null, "create", XlTests.WriteConfig(host, "storeguest", "blkfront.elf"));
        Assert.True(code == 0, $"{stderr}\n{host.Log}");

        // XS_READ of the relative path "name" resolves under /local/domain/1, which the toolstack wrote.
        XlTests.WaitForConsoleOrLog(host, "name: storeguest\n");
        Assert.Contains("read name: 0\n", host.Log);
        // An absent directory is answered too (XS_ERROR ENOENT), not left hanging.
        XlTests.WaitForConsoleOrLog(host, "directory device/vbd: -1\n");

        (code, _, stderr) = XlTests.Xl(host, null, "destroy", "storeguest");
        Assert.True(code == 0, stderr);
        Assert.False(host.HasExited);
    }
}
