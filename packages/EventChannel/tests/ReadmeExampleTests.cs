using System.Text.RegularExpressions;

namespace VmmKit.EventChannel.Tests;

/// <summary>The README's example: the same code runs here, prints what the README says, and the README's copy is kept identical.</summary>
public partial class ReadmeExampleTests
{
    private static async Task Example()
    {
        // README-BEGIN
        var hypervisor = new EventChannelHypervisor();
        using var dom0 = new EventChannelHostDomain(hypervisor, id: 0, isControlDomain: true);
        using var domU = new EventChannelHostDomain(hypervisor, id: 1);

        using var backend = dom0.Open();                                  // xenevtchn_open
        using var frontend = domU.Open();

        uint backendPort = backend.BindUnboundPort(remoteDomain: 1);      // dom0 offers a port to domain 1
        uint frontendPort = frontend.BindInterdomain(remoteDomain: 0, backendPort);
        Console.WriteLine($"dom0 port {backendPort} <-> dom1 port {frontendPort}");

        frontend.Notify(frontendPort);                                    // xenevtchn_notify
        uint fired = await backend.PendingAsync();                        // xenevtchn_pending
        Console.WriteLine($"dom0: event on port {fired}");
        backend.Unmask(fired);                                            // xenevtchn_unmask
        // README-END
    }

    [Fact]
    public async Task Example_prints_what_the_readme_says()
    {
        var output = new StringWriter();
        TextWriter original = Console.Out;
        Console.SetOut(output);
        try
        {
            await Example().WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            Console.SetOut(original);
        }
        Assert.Equal("dom0 port 1 <-> dom1 port 1\ndom0: event on port 1\n", output.ToString().Replace("\r\n", "\n"));

        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        Assert.Contains("dom0 port 1 <-> dom1 port 1\ndom0: event on port 1\n", readme);
    }

    [Fact]
    public void Readme_code_is_the_tested_code()
    {
        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        string test = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "ReadmeExampleTests.cs"));
        Match block = ReadmeBlock().Match(readme);
        Assert.True(block.Success, "README has no csharp example");
        int begin = test.IndexOf("// README-BEGIN", StringComparison.Ordinal), end = test.IndexOf("// README-END", StringComparison.Ordinal);
        string tested = test[(test.IndexOf('\n', begin) + 1)..end];
        string readmeCode = string.Join('\n', block.Groups[1].Value.Split('\n').Where(l => !UsingDirective().IsMatch(l)));
        Assert.Equal(Normalize(tested), Normalize(readmeCode));
    }

    private static string Normalize(string code) =>
        string.Join('\n', code.Replace("\r", "").Split('\n').Select(l => Regex.Replace(l.Trim(), @"\s+", " ")).Where(l => l.Length > 0));

    [GeneratedRegex(@"^using [\w.]+;\s*$")]
    private static partial Regex UsingDirective();

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex ReadmeBlock();
}
