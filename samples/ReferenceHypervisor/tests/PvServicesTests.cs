using VmmKit.Hypercall;
using VmmKit.XenStore.Client;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>The quick path's in-process Dom0: the toolstack's XenStore tree and the vbd directories, read back as Dom0 would.</summary>
public class PvServicesTests
{
    [Fact]
    public async Task A_new_domain_gets_the_toolstack_tree_and_a_disk_gets_its_vbd_directories()
    {
        string image = Path.GetTempFileName();
        File.WriteAllBytes(image, new byte[1 << 20]);
        try
        {
            using var machine = new Machine(80 << 20, ProcessorProviders.CreateDefault());
            Assert.True(machine.TryCreateDomain(new DomainConfig("guest", Demo.DemoGuest.Build(), 32 << 20), out var d, out string error), error);
            machine.Pv!.AddDisk(d!, image);
            await using var xs = new XenStoreClient(machine.Pv!.Daemon.Connect(0));
            string home = $"/local/domain/{d!.Id}";
            Assert.Equal("guest", await xs.ReadStringAsync($"{home}/name"));
            Assert.Equal(d.Id.ToString(), await xs.ReadStringAsync($"{home}/domid"));
            Assert.Equal("32768", await xs.ReadStringAsync($"{home}/memory/target"));
            Assert.Equal(d.GetHvmParam(HvmParam.StoreEvtchn).ToString(), await xs.ReadStringAsync($"{home}/store/port"));
            Assert.Equal(d.GetHvmParam(HvmParam.ConsolePfn).ToString(), await xs.ReadStringAsync($"{home}/console/ring-ref"));
            Assert.Equal("Domain-0", await xs.ReadStringAsync("/local/domain/0/name"));
            // The guest owns its device directory; Dom0 owns its home and lets the guest read it.
            Assert.Equal($"n{d.Id}", (await xs.GetPermissionsAsync($"{home}/device"))[0].ToString());
            Assert.Equal(["n0", $"r{d.Id}"], (await xs.GetPermissionsAsync(home)).Select(p => p.ToString()));

            string be = $"/local/domain/0/backend/vbd/{d.Id}/51712", fe = $"{home}/device/vbd/51712";
            Assert.Equal(be, await xs.ReadStringAsync($"{fe}/backend"));
            Assert.Equal(fe, await xs.ReadStringAsync($"{be}/frontend"));
            Assert.Equal(image, await xs.ReadStringAsync($"{be}/params"));
            Assert.Equal("xvda", await xs.ReadStringAsync($"{be}/dev"));
            Assert.Equal("2048", await xs.ReadStringAsync($"{be}/sectors"));
            Assert.Equal("2", await xs.ReadStringAsync($"{be}/state"));   // InitWait before the guest runs
            Assert.Equal("1", await xs.ReadStringAsync($"{fe}/state"));
        }
        finally
        {
            File.Delete(image);
        }
    }
}
