using System.Globalization;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>Many clients doing transactional read-modify-write of shared counters: no lost update.</summary>
public class ConcurrencyTests
{
    [Fact]
    public async Task Conflicting_commit_gets_EAGAIN_and_a_retry_succeeds()
    {
        await using var d = new TestDaemon();
        await using var a = await d.ConnectAsync();
        await using var b = await d.ConnectAsync();
        await a.WriteAsync("/counter", "0");
        var ta = await a.StartTransactionAsync();
        var tb = await b.StartTransactionAsync();
        int va = int.Parse(await a.ReadStringAsync("/counter", ta), CultureInfo.InvariantCulture);
        int vb = int.Parse(await b.ReadStringAsync("/counter", tb), CultureInfo.InvariantCulture);
        await a.WriteAsync("/counter", (va + 1).ToString(CultureInfo.InvariantCulture), ta);
        await b.WriteAsync("/counter", (vb + 1).ToString(CultureInfo.InvariantCulture), tb);
        await a.EndTransactionAsync(ta, true);
        var e = await Assert.ThrowsAsync<XenStoreException>(() => b.EndTransactionAsync(tb, true));
        Assert.Equal(XsError.EAGAIN, e.Error);
        await b.TransactAsync(async t =>
        {
            int v = int.Parse(await b.ReadStringAsync("/counter", t), CultureInfo.InvariantCulture);
            await b.WriteAsync("/counter", (v + 1).ToString(CultureInfo.InvariantCulture), t);
            return v;
        });
        Assert.Equal("2", await a.ReadStringAsync("/counter"));
    }

    [Fact]
    public async Task Parallel_transactional_increments_lose_nothing()
    {
        const int Clients = 12, PerClient = 60, Counters = 3;
        await using var d = new TestDaemon();
        await using (var setup = await d.ConnectAsync())
        {
            for (int k = 0; k < Counters; k++)
                await setup.WriteAsync($"/counters/c{k}", "0");
        }

        var clients = new List<XenStoreClient>();
        for (int i = 0; i < Clients; i++)
            clients.Add(i % 3 == 0 ? d.ConnectAsDomain(0) : await d.ConnectAsync());
        var perCounter = new int[Counters];
        var tasks = clients.Select((client, i) => Task.Run(async () =>
        {
            for (int n = 0; n < PerClient; n++)
            {
                int k = (i + n) % Counters;
                await client.TransactAsync(async tx =>
                {
                    string path = $"/counters/c{k}";
                    int v = int.Parse(await client.ReadStringAsync(path, tx), CultureInfo.InvariantCulture);
                    await client.WriteAsync(path, (v + 1).ToString(CultureInfo.InvariantCulture), tx);
                    await client.WriteAsync($"/counters/log/{i}", n.ToString(CultureInfo.InvariantCulture), tx);
                    return 0;
                });
                Interlocked.Increment(ref perCounter[k]);
            }
        })).ToArray();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(3));

        await using var check = await d.ConnectAsync();
        long total = 0;
        for (int k = 0; k < Counters; k++)
        {
            int value = int.Parse(await check.ReadStringAsync($"/counters/c{k}"), CultureInfo.InvariantCulture);
            Assert.Equal(perCounter[k], value);
            total += value;
        }
        Assert.Equal(Clients * PerClient, total);
        long retries = clients.Sum(c => c.Retries);
        Console.WriteLine($"{total} commits, {retries} EAGAIN retries");
        foreach (var c in clients)
            await c.DisposeAsync();
    }
}
