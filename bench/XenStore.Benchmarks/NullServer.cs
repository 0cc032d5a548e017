using System.Net.Sockets;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Benchmarks;

/// <summary>
/// The transport's limit: a Unix-socket server that parses each XenStore frame and answers it at once
/// ("OK", or a transaction id for TRANSACTION_START), with no store behind it.
/// </summary>
internal sealed class NullServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _cts = new();
    private readonly Task _accept;

    public NullServer(string path)
    {
        if (File.Exists(path))
            File.Delete(path);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(512);
        _accept = Task.Run(AcceptAsync);
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var s = await _listener.AcceptAsync(_cts.Token);
                _ = Task.Run(() => ServeAsync(s));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        using var stream = new NetworkStream(socket, ownsSocket: true);
        var buffer = new byte[64 * 1024];
        var output = new byte[64 * 1024];
        int start = 0, end = 0;
        try
        {
            while (true)
            {
                int n = await stream.ReadAsync(buffer.AsMemory(end), _cts.Token);
                if (n == 0)
                    return;
                end += n;
                int outLen = 0;
                while (XsFrameReader.TryRead(buffer.AsSpan(start, end - start), out var h, out _, out int consumed) == XsFrameStatus.Frame)
                {
                    ReadOnlySpan<byte> reply = h.Type == XsMessageType.TransactionStart ? "1\0"u8 : "OK\0"u8;
                    new XsHeader(h.Type, h.RequestId, h.TransactionId, (uint)reply.Length).Write(output.AsSpan(outLen));
                    reply.CopyTo(output.AsSpan(outLen + 16));
                    outLen += 16 + reply.Length;
                    start += consumed;
                }
                if (start == end)
                    start = end = 0;
                await stream.WriteAsync(output.AsMemory(0, outLen), _cts.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _cts.Cancel();
        _listener.Dispose();
        try
        {
            await _accept;
        }
        catch (OperationCanceledException)
        {
        }
    }
}
