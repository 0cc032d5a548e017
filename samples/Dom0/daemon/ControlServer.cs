using System.Globalization;
using System.Net.Sockets;
using System.Text;
using VmmKit.Dom0.Xen;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// The control socket <c>RUNDIR/dom0.sock</c> that <c>vmmkit-xl</c> talks to: one request line (verb and tab-separated
/// arguments), then output lines and a last line <c>ok</c> or <c>error: reason</c>. <c>console DOMAIN</c> answers
/// <c>ok</c> and then becomes a byte stream both ways (what the domain printed so far, then live) until the client closes.
/// </summary>
internal sealed class ControlServer(Toolstack toolstack, XenControl xc, IConsoleBackend console, string socketPath)
{
    /// <summary>Accepts clients until <paramref name="cancellationToken"/> fires.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        File.Delete(socketPath);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath + ".new"));
        listener.Listen(16);
        File.Move(socketPath + ".new", socketPath, overwrite: true);
        while (!cancellationToken.IsCancellationRequested)
        {
            var client = await listener.AcceptAsync(cancellationToken);
            _ = Task.Run(() => ServeAsync(client, cancellationToken), cancellationToken);
        }
    }

    private async Task ServeAsync(Socket client, CancellationToken cancellationToken)
    {
        using var _ = client;
        await using var stream = new NetworkStream(client, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8, leaveOpen: true);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true) { AutoFlush = true, NewLine = "\n" };
        string? line = await reader.ReadLineAsync(cancellationToken);
        if (line is null)
            return;
        string[] args = line.Split('\t');
        try
        {
            switch (args[0])
            {
                case "create" when args.Length == 2:
                {
                    var cfg = XlConfig.Parse(await File.ReadAllTextAsync(args[1], cancellationToken), Path.GetDirectoryName(Path.GetFullPath(args[1]))!, out string error)
                        ?? throw new InvalidOperationException($"{args[1]}: {error}");
                    ushort domid = await toolstack.CreateAsync(cfg);
                    await writer.WriteLineAsync($"Started domain {cfg.Name} (id={domid})");
                    break;
                }

                case "list":
                    await writer.WriteLineAsync(string.Format(CultureInfo.InvariantCulture, "{0,-40} {1,5} {2,5} {3,5} {4,10} {5,9}", "Name", "ID", "Mem", "VCPUs", "State", "Time(s)"));
                    foreach (var d in xc.ListDomains())
                    {
                        await writer.WriteLineAsync(string.Format(CultureInfo.InvariantCulture, "{0,-40} {1,5} {2,5} {3,5}     {4}  {5,8:F1}",
                            await toolstack.NameOfAsync(d.Domid), d.Domid, d.TotalPages >> 8, d.OnlineVcpus, d.StateLetters, d.CpuTimeNanoseconds / 1e9));
                    }

                    break;
                case "destroy" when args.Length == 2:
                    await toolstack.DestroyAsync(await Resolve(args[1]));
                    break;
                case "shutdown" when args.Length == 2:
                    await toolstack.RequestShutdownAsync(await Resolve(args[1]), ShutdownReason.Poweroff);
                    break;
                case "reboot" when args.Length == 2:
                    await toolstack.RequestShutdownAsync(await Resolve(args[1]), ShutdownReason.Reboot);
                    break;
                case "pause" when args.Length == 2:
                    xc.Pause(await Resolve(args[1]));
                    break;
                case "unpause" when args.Length == 2:
                    xc.Unpause(await Resolve(args[1]));
                    break;
                case "info":
                {
                    var (major, minor) = xc.Version();
                    var (total, free) = xc.PhysInfo();
                    await writer.WriteLineAsync($"host                   : {Environment.MachineName}");
                    await writer.WriteLineAsync("nr_cpus                : 1");
                    await writer.WriteLineAsync($"total_memory           : {total >> 8}");
                    await writer.WriteLineAsync($"free_memory            : {free >> 8}");
                    await writer.WriteLineAsync($"xen_major              : {major}");
                    await writer.WriteLineAsync($"xen_minor              : {minor}");
                    await writer.WriteLineAsync("xen_caps               : hvm-3.0-x86_64 hvm-3.0-x86_32");
                    break;
                }

                case "console" when args.Length == 2:
                    await ConsoleAsync(await Resolve(args[1]), stream, writer, cancellationToken);
                    return;
                default:
                    throw new InvalidOperationException($"unknown request: {args[0]}");
            }

            await writer.WriteLineAsync("ok");
        }
        catch (Exception e) when (e is InvalidOperationException or XenException or IOException or VmmKit.XenStore.Client.XenStoreException
                                     or VmmKit.EventChannel.EventChannelException)
        {
            await writer.WriteLineAsync($"error: {e.Message}");
        }
    }

    private async Task<ushort> Resolve(string nameOrId) =>
        await toolstack.ResolveAsync(nameOrId) ?? throw new InvalidOperationException($"no domain {nameOrId}");

    private async Task ConsoleAsync(ushort domid, NetworkStream stream, StreamWriter writer, CancellationToken cancellationToken)
    {
        // At most the domain's console/limit of output waits for a client that does not read (ConsoleFollower). An empty
        // chunk is the end of the domain's console (it was destroyed): the session ends, as xenconsole's does.
        var outgoing = new ConsoleFollower(ConsoleLog.MaxHistory);
        using var follow = console.Follow(domid, chunk => outgoing.Post(chunk.Span), out byte[] history);
        await writer.WriteLineAsync("ok");
        await stream.WriteAsync(history, cancellationToken);
        using var done = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var input = Task.Run(async () =>
        {
            var buffer = new byte[256];
            int n;
            while ((n = await stream.ReadAsync(buffer, done.Token)) > 0)
                console.Input(domid, buffer.AsSpan(0, n));
            done.Cancel();
        }, done.Token);
        try
        {
            await foreach (byte[] chunk in outgoing.ReadAllAsync(done.Token))
                await stream.WriteAsync(chunk, done.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The client left.
        }
        finally
        {
            done.Cancel();
        }
    }
}
