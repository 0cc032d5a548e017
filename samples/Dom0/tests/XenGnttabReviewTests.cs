using System.Diagnostics;
using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen;
using VmmKit.GrantTable;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// Review of Dom0's grant client and backends against a hostile guest: a guest owns its grant table, so what the
/// toolstack seeded there (the console ring as <c>GNTTAB_RESERVED_CONSOLE</c>) may be gone when a new Dom0 maps it; and
/// it writes as much console output as it likes.
/// </summary>
public sealed class XenGnttabReviewTests
{
    // xenconsoled's domain_create_ring leaves a console it cannot map unconnected and goes on with the other domains;
    // a new vmmkit-dom0 must come up too, whatever one guest did to its grant entry 0.
    [Fact]
    public void A_guest_that_ended_its_console_grant_does_not_keep_a_new_Dom0_from_reattaching()
    {
        using var host = XlTests.StartHostWithDom0();
        var (code, _, stderr) = XlTests.Xl(host, null, "create", XlTests.WriteConfig(host, "hostile", "workload.elf", "extra = \"iterations=1000000\""));
        Assert.True(code == 0, stderr);
        Dom0SystemTests.KillAndWait(Dom0SystemTests.FindDom0(host.RunDirectory));

        Dom0SystemTests.WaitFor(() => host.Log.Contains("Dom0 disconnected", StringComparison.Ordinal), host, "Dom0 disconnected");

        // The guest ends its grant 0 (gnttab_end_foreign_access_ref), done here through the grant table frame a Dom0
        // places in the guest's physmap as libxc's xc_dom_gnttab_hvm_seed does (just above its 16 MiB of RAM).
        using (var channel = host.Connect())
        {
            var xc = new XenControl(new Privcmd(channel));
            const ulong scratch = 16UL << 8;
            xc.AddToPhysmap(1, XenMapSpace.GrantTable, 0, scratch);
            var mfn = new long[1];
            xc.Privcmd.MmapBatch(1, [scratch], mfn);
            Assert.True(mfn[0] > 0, $"mapping the guest's grant table: {mfn[0]}");
            MemoryMarshal.Cast<byte, GrantEntryV1>(channel.Frame((ulong)mfn[0]))[0].Flags = 0;
            xc.Privcmd.Unmap([(ulong)mfn[0]]);
        }

        File.Delete(Path.Combine(host.RunDirectory, "dom0.sock"));
        using var second = Process.Start(new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "vmmkit-dom0"), ["--rundir", host.RunDirectory]))!;
        try
        {
            Dom0SystemTests.WaitFor(() => File.Exists(Path.Combine(host.RunDirectory, "dom0.sock")) || second.HasExited, host, "the new Dom0's socket");
            Assert.False(second.HasExited, $"the new vmmkit-dom0 exited ({(second.HasExited ? second.ExitCode : 0)})\n{host.Log}");
            var (listed, list, listErrors) = XlTests.Xl(host, null, "list");
            Assert.True(listed == 0, listErrors);
            Assert.Matches(@"\nhostile\s+1\s+", list);
            (code, _, stderr) = XlTests.Xl(host, null, "destroy", "hostile");
            Assert.True(code == 0, stderr);
        }
        finally
        {
            if (!second.HasExited)
            {
                second.Kill();
            }

            second.WaitForExit();
        }
    }

    // A guest that prints without end must not grow Dom0's memory without end: xenconsoled keeps at most the domain's
    // console/limit bytes (buffer_append discards the rest; the toolstack writes 1 MiB), so xl console's replay is
    // the newest output up to that limit.
    [Fact]
    public void A_guest_flooding_its_console_keeps_a_bounded_replay_of_its_newest_output()
    {
        string path = Path.Combine(Path.GetTempPath(), $"vmmkit-conslog-{Guid.NewGuid():N}.log");
        try
        {
            using var log = new VmmKit.Dom0.Daemon.ConsoleLog(path);
            byte[] chunk = new byte[2048];
            for (int i = 0; i < 4096; i++) // 8 MiB, one out ring at a time
            {
                chunk.AsSpan().Fill((byte)i);
                log.Write(chunk, 0, chunk.Length);
            }

            using var follow = log.Follow(_ => { }, out byte[] history);
            Assert.Equal(1 << 20, history.Length);
            Assert.Equal(unchecked((byte)4095), history[^1]);
            Assert.Equal(unchecked((byte)(4096 - 512)), history[0]);
            log.Flush();
            Assert.Equal(8L << 20, new FileInfo(path).Length); // the log file keeps everything, as xenconsoled's does
        }
        finally
        {
            File.Delete(path);
        }
    }
}
