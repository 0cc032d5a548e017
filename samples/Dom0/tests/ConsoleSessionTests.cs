using System.Net.Sockets;
using System.Text;
using VmmKit.Dom0.Daemon;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// <c>xl console</c>'s session on Dom0's control socket, with a console backend of the test's own: what Dom0 holds for a
/// client that stops reading while its guest keeps printing.
/// </summary>
public sealed class ConsoleSessionTests
{
    // xenconsoled keeps at most the domain's console/limit bytes of output that its tty has not taken yet (buffer_append
    // discards the rest), so a stalled client cannot make a chatty guest grow Dom0's memory without end.
    [Fact]
    public Task A_client_that_stops_reading_while_its_guest_prints_64_MiB_is_sent_at_most_the_console_limit_then_the_newest_output() =>
        InConsoleSessionAsync(async (console, client) =>
        {
            // The client reads nothing while the guest prints 64 MiB, one out ring (2 KiB) at a time, then a last line.
            byte[] chunk = new byte[2048];
            chunk.AsSpan().Fill((byte)'a');
            for (int i = 0; i < 32 * 1024; i++)
                console.Print(chunk);
            byte[] last = Encoding.ASCII.GetBytes("\nthe newest line\n");
            console.Print(last);

            // Then it reads until that last line: what Dom0 held for it, plus what the socket held.
            long received = 0;
            byte[] buffer = new byte[64 * 1024];
            var tail = new List<byte>();
            while (tail.Count < last.Length || !tail.Skip(tail.Count - last.Length).SequenceEqual(last))
            {
                int n = await client.ReceiveAsync(buffer);
                Assert.NotEqual(0, n);
                received += n;
                tail.AddRange(buffer.AsSpan(0, n).ToArray());
                if (tail.Count > 2 * last.Length)
                    tail.RemoveRange(0, tail.Count - last.Length);
            }

            Assert.InRange(received, last.Length, ConsoleLog.MaxHistory + (2 << 20));
        });

    // xenconsole's session ends when the domain's console does (it was destroyed), after what the domain printed last.
    [Fact]
    public Task The_session_ends_after_the_last_output_when_the_console_is_disconnected() =>
        InConsoleSessionAsync(async (console, client) =>
        {
            console.Print(Encoding.ASCII.GetBytes("halted\n"));
            console.Print([]);

            var all = new MemoryStream();
            byte[] buffer = new byte[256];
            int n;
            while ((n = await client.ReceiveAsync(buffer)) > 0)
                all.Write(buffer, 0, n);
            Assert.Equal("halted\n", Encoding.ASCII.GetString(all.ToArray()));
        });

    [Fact]
    public async Task A_follower_keeps_the_newest_bytes_up_to_its_limit_and_counts_what_it_dropped()
    {
        var follower = new ConsoleFollower(limit: 10);
        follower.Post("abcd"u8);
        follower.Post("efgh"u8);
        follower.Post("ijkl"u8);                    // 12 bytes: "abcd" goes
        Assert.Equal(8, follower.PendingBytes);
        Assert.Equal(4, follower.DroppedBytes);
        follower.Post("0123456789ABCDEF"u8);        // longer than the limit alone: its last 10 bytes stay
        Assert.Equal(10, follower.PendingBytes);
        Assert.Equal(4 + 8 + 6, follower.DroppedBytes);
        follower.Post([]);

        var read = new List<string>();
        await foreach (byte[] chunk in follower.ReadAllAsync())
            read.Add(Encoding.ASCII.GetString(chunk));
        Assert.Equal(["6789ABCDEF"], read);
        Assert.Equal(0, follower.PendingBytes);
    }

    /// <summary>
    /// A control server on a socket of its own, with a console backend of the test's, and a client whose
    /// <c>console Domain-0</c> request was answered <c>ok</c>: <paramref name="body"/> then prints and reads.
    /// </summary>
    private static async Task InConsoleSessionAsync(Func<FakeConsole, Socket, Task> body)
    {
        var console = new FakeConsole();
        string socketPath = Path.Combine(Path.GetTempPath(), $"vmmkit-cs-{Guid.NewGuid():N}.sock");
        var server = new ControlServer(new Toolstack(null!, null!, console, null!, null!, () => { }), null!, console, socketPath);
        using var stop = new CancellationTokenSource();
        var serving = server.RunAsync(stop.Token);
        try
        {
            using var client = await ConnectAsync(socketPath);
            await client.SendAsync(Encoding.ASCII.GetBytes("console\tDomain-0\n"));
            Assert.Equal("ok\n", Encoding.ASCII.GetString(await ReceiveExactlyAsync(client, 3)));
            await body(console, client);
        }
        finally
        {
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => serving);
            File.Delete(socketPath);
        }
    }

    private static async Task<Socket> ConnectAsync(string socketPath)
    {
        for (int attempt = 0; ; attempt++)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
                return socket;
            }
            catch (SocketException) when (attempt < 500)
            {
                socket.Dispose();
                await Task.Delay(10);   // the server has not bound its socket yet
            }
        }
    }

    private static async Task<byte[]> ReceiveExactlyAsync(Socket socket, int length)
    {
        byte[] data = new byte[length];
        for (int done = 0; done < length;)
        {
            int n = await socket.ReceiveAsync(data.AsMemory(done));
            Assert.NotEqual(0, n);
            done += n;
        }

        return data;
    }

    /// <summary>A console backend whose one domain prints what the test gives it, to whoever follows it.</summary>
    private sealed class FakeConsole : IConsoleBackend
    {
        private Action<ReadOnlyMemory<byte>>? _follower;

        public void Print(byte[] output) => _follower!(output);

        public uint Connect(ushort domid, uint remotePort) => throw new NotSupportedException();

        public uint Reconnect(ushort domid, uint localPort, uint remotePort) => throw new NotSupportedException();

        public IDisposable Follow(ushort domid, Action<ReadOnlyMemory<byte>> output, out byte[] history)
        {
            _follower = output;
            history = [];
            return new Unfollow(this);
        }

        public void Input(ushort domid, ReadOnlySpan<byte> data)
        {
        }

        public void Disconnect(ushort domid) => throw new NotSupportedException();

        private sealed class Unfollow(FakeConsole console) : IDisposable
        {
            public void Dispose() => console._follower = null;
        }
    }
}
