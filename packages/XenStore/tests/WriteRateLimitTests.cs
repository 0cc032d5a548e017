using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.TestSupport;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// Xen 4.17's write rate limit (xenstored_domain.c, <c>wrl_*</c>): while any transaction is open, each node an
/// unprivileged domain writes or deletes outside a transaction costs one write, and each of its commits one; a domain
/// starts with a burst of 10 writes (<c>WRL_DBURST</c>) and earns 200 a second (<c>WRL_RATE</c>) shared by all
/// domains; below zero its requests are not read (<c>domain_can_read</c>) until it has earned its way back. Without
/// it a guest rewriting nodes a backend's transaction reads makes that transaction fail with EAGAIN forever.
/// </summary>
public class WriteRateLimitTests
{
    // Long enough for any machine; a request held by a limit that should not apply fails the test instead of hanging it.
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static async Task WaitForAsync(Func<bool> condition)
    {
        for (int i = 0; i < 3000 && !condition(); i++)
            await Task.Delay(10);
        Assert.True(condition());
    }

    private static async Task<(XenStoreDaemon Daemon, XenStoreClient Dom0, XenStoreClient Guest)> StartAsync(ManualTime time)
    {
        var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { TimeProvider = time });
        var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.WriteAsync("/g", "0").WaitAsync(Timeout);
        await dom0.SetPermissionsAsync("/g", [new XsPermission(5, XsAccess.None)]);
        return (daemon, dom0, new XenStoreClient(daemon.Connect(5)));
    }

    [Fact]
    public async Task A_guest_writing_while_a_transaction_is_open_waits_for_credit()
    {
        var time = new ManualTime();
        var (daemon, dom0, guest) = await StartAsync(time);
        await using (daemon)
        await using (dom0)
        await using (guest)
        {
            var tx = await dom0.StartTransactionAsync().WaitAsync(Timeout);
            // A burst of 10 writes; the 11th is read at credit 0 and takes it below zero.
            for (int i = 0; i < 11; i++)
                await guest.WriteAsync("/g", i.ToString(System.Globalization.CultureInfo.InvariantCulture)).WaitAsync(Timeout);
            var held = guest.WriteAsync("/g", "held");
            await WaitForAsync(() => time.Waiting == 1);
            Assert.False(held.IsCompleted);
            Assert.Equal("10", await dom0.ReadStringAsync("/g"));

            // -1 write at 200 writes a second shared by two domains (domain 0 and 5): 10 ms.
            time.Advance(TimeSpan.FromMilliseconds(9));
            Assert.Equal(1, time.Waiting);
            time.Advance(TimeSpan.FromMilliseconds(1));
            await held.WaitAsync(Timeout);
            Assert.Equal("held", await dom0.ReadStringAsync("/g"));
            await dom0.EndTransactionAsync(tx, commit: false).WaitAsync(Timeout);
        }
    }

    [Fact]
    public async Task Without_an_open_transaction_nothing_is_limited()
    {
        var time = new ManualTime();
        var (daemon, dom0, guest) = await StartAsync(time);
        await using (daemon)
        await using (dom0)
        await using (guest)
        {
            for (int i = 0; i < 40; i++)
                await guest.WriteAsync("/g", "x").WaitAsync(Timeout);
            Assert.Equal(0, time.Waiting);

            // Nor is a privileged domain while a guest's transaction is open.
            var tx = await guest.StartTransactionAsync().WaitAsync(Timeout);
            for (int i = 0; i < 40; i++)
                await dom0.WriteAsync("/d0", "x").WaitAsync(Timeout);
            Assert.Equal(0, time.Waiting);
            await guest.EndTransactionAsync(tx, commit: false).WaitAsync(Timeout);
        }
    }

    [Fact]
    public async Task Writes_inside_a_transaction_cost_nothing_and_its_commit_costs_one()
    {
        var time = new ManualTime();
        var (daemon, dom0, guest) = await StartAsync(time);
        await using (daemon)
        await using (dom0)
        await using (guest)
        {
            var other = await dom0.StartTransactionAsync().WaitAsync(Timeout);
            var tx = await guest.StartTransactionAsync().WaitAsync(Timeout);
            for (int i = 0; i < 30; i++)
                await guest.WriteAsync("/g", "t", tx).WaitAsync(Timeout);
            await guest.EndTransactionAsync(tx, commit: true).WaitAsync(Timeout);
            // 10 - 1 (the commit) leaves 9 writes; the 10th is read at 0.
            for (int i = 0; i < 10; i++)
                await guest.WriteAsync("/g", "x").WaitAsync(Timeout);
            var held = guest.WriteAsync("/g", "held");
            await WaitForAsync(() => time.Waiting == 1);
            Assert.False(held.IsCompleted);

            // Closing the last transaction does not lift a debt already made: the credit comes back with time.
            await dom0.EndTransactionAsync(other, commit: false).WaitAsync(Timeout);
            time.Advance(TimeSpan.FromMilliseconds(10));
            await held.WaitAsync(Timeout);
        }
    }

    [Fact]
    public async Task A_commit_is_free_when_no_other_transaction_is_open()
    {
        var time = new ManualTime();
        var (daemon, dom0, guest) = await StartAsync(time);
        await using (daemon)
        await using (dom0)
        await using (guest)
        {
            for (int i = 0; i < 20; i++)
            {
                var tx = await guest.StartTransactionAsync().WaitAsync(Timeout);
                await guest.WriteAsync("/g", "t", tx).WaitAsync(Timeout);
                await guest.EndTransactionAsync(tx, commit: true).WaitAsync(Timeout);
            }
            Assert.Equal(0, time.Waiting);
        }
    }
}
