namespace VmmKit.XenStore.Tests;

/// <summary>Debian's xenstore-utils (libxenstore) against our daemon through XENSTORED_PATH.</summary>
public class InteropTests
{
    [Fact]
    public async Task Xenstore_tools_write_read_list_chmod_and_remove()
    {
        await using var d = new TestDaemon();

        var w = d.Tool("xenstore-write", "/vmmkit/a", "hello", "/vmmkit/b/c", "deep value");
        Assert.True(w.ExitCode == 0, w.Stderr);

        // Our daemon really has it: read back through our own client, not just the tools.
        await using (var client = await d.ConnectAsync())
            Assert.Equal("hello", await client.ReadStringAsync("/vmmkit/a"));

        var r = d.Tool("xenstore-read", "/vmmkit/a", "/vmmkit/b/c");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("hello\ndeep value\n", r.Stdout);

        var ex = d.Tool("xenstore-exists", "/vmmkit/b");
        Assert.Equal(0, ex.ExitCode);
        Assert.NotEqual(0, d.Tool("xenstore-exists", "/vmmkit/nope").ExitCode);

        var list = d.Tool("xenstore-list", "/vmmkit");
        Assert.Equal(0, list.ExitCode);
        Assert.Equal("a\nb\n", list.Stdout);

        var ls = d.Tool("xenstore-ls", "/vmmkit");
        Assert.Equal(0, ls.ExitCode);
        Assert.Contains("a = \"hello\"", ls.Stdout);
        Assert.Contains("c = \"deep value\"", ls.Stdout);

        var chmod = d.Tool("xenstore-chmod", "/vmmkit/a", "n5", "r7");
        Assert.True(chmod.ExitCode == 0, chmod.Stderr);
        var lsp = d.Tool("xenstore-ls", "-p", "/vmmkit");
        Assert.Contains("(n5,r7)", lsp.Stdout);

        var rm = d.Tool("xenstore-rm", "/vmmkit/b");
        Assert.Equal(0, rm.ExitCode);
        Assert.NotEqual(0, d.Tool("xenstore-exists", "/vmmkit/b/c").ExitCode);
        var missing = d.Tool("xenstore-read", "/vmmkit/b/c");
        Assert.NotEqual(0, missing.ExitCode);
    }

    [Fact]
    public async Task Xenstore_watch_sees_changes_made_by_another_client()
    {
        await using var d = new TestDaemon();
        await using var client = await d.ConnectAsync();
        await client.WriteAsync("/w/x", "0");

        string tool = VmmKit.TestSupport.RequiredTool.Require("xenstore-watch", "xenstore-utils");
        var psi = new System.Diagnostics.ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-n");
        psi.ArgumentList.Add("3");
        psi.ArgumentList.Add("/w");
        psi.Environment["XENSTORED_PATH"] = d.SocketPath;
        using var p = System.Diagnostics.Process.Start(psi)!;
        // The first line is the initial event for the watched path itself.
        string? first = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("/w", first);
        await client.WriteAsync("/w/x", "1");
        Assert.Equal("/w/x", await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        await client.RemoveAsync("/w/x");
        Assert.Equal("/w/x", await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(p.WaitForExit(30_000));
        Assert.Equal(0, p.ExitCode);
    }

    [Fact]
    public async Task Large_directory_goes_through_directory_part()
    {
        await using var d = new TestDaemon();
        await using var client = await d.ConnectAsync();
        var tx = await client.StartTransactionAsync();
        for (int i = 0; i < 400; i++)
            await client.WriteAsync($"/big/child-with-a-long-name-{i:D4}", "v", tx);
        await client.EndTransactionAsync(tx, true);

        var names = await client.DirectoryAsync("/big");
        Assert.Equal(400, names.Count);
        var list = d.Tool("xenstore-list", "/big");
        Assert.Equal(0, list.ExitCode);
        Assert.Equal(400, list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }
}
