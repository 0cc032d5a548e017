using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// The samples publish with NativeAOT: vmmkit-xenstored published that way must still do everything that
/// needs the OS underneath .NET — keeping sockets across execvp and adopting them by number — so a JIT-run
/// daemon is live-updated into the native binary and back, with Debian's tools watching.
/// </summary>
public class XenstoredNativeAotTests
{
    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Packages.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException("Packages.sln not found above " + AppContext.BaseDirectory);
    }

    [Fact]
    public async Task The_native_aot_daemon_takes_over_and_hands_back_in_a_live_update()
    {
        var control = DebianTool.XenstoreControl();
        string output = Path.Combine(Path.GetTempPath(), "vmmkit-xsd-aot-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "publish", Path.Combine(RepositoryRoot(), "samples/Dom0/xenstored/Xenstored.csproj"), "-c", "Release", "-o", output, "-nologo" })
                psi.ArgumentList.Add(a);
            using (var publish = Process.Start(psi)!)
            {
                var stdout = publish.StandardOutput.ReadToEndAsync();
                var stderr = publish.StandardError.ReadToEndAsync();
                await publish.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(10));
                Assert.True(publish.ExitCode == 0, await stdout + await stderr);
            }
            string native = Path.Combine(output, "vmmkit-xenstored");
            Assert.True(File.Exists(native));
            // A NativeAOT binary has no managed entry assembly beside it.
            Assert.False(File.Exists(Path.Combine(output, "vmmkit-xenstored.dll")));

            using var d = await XenstoredProcess.StartAsync();
            var write = d.Tool(RequiredTool.Require("xenstore-write", "xenstore-utils"), "/aot/a", "1");
            Assert.True(write.ExitCode == 0, write.Stderr);
            var (watcher, lines) = d.StartWatch("/aot");
            try
            {
                Assert.Equal("/aot", await lines.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
                int round = 0;
                foreach (var binary in new[] { native, XenstoredProcess.AppHost })
                {
                    var lu = d.Tool(control, "live-update", "-t", "20", binary);
                    Assert.True(lu.ExitCode == 0, lu.Stderr);
                    Assert.Equal(binary, d.Image);
                    var read = d.Tool(RequiredTool.Require("xenstore-read", "xenstore-utils"), "/aot/a");
                    Assert.Equal("1\n", read.Stdout);
                    string node = $"/aot/round{round++}";
                    Assert.Equal(0, d.Tool(RequiredTool.Require("xenstore-write", "xenstore-utils"), node, "x").ExitCode);
                    Assert.Equal(node, await lines.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
                }
            }
            finally
            {
                watcher.Kill();
            }
            Assert.Equal(0, await d.TerminateAsync());
        }
        finally
        {
            if (Directory.Exists(output))
                Directory.Delete(output, recursive: true);
        }
    }
}
