using System.Diagnostics;
using System.Text;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// A seeded fuzz target for the message parser and handlers: mutated valid messages and random bytes.
/// Bounded by an iteration count and a time budget (never asserted on); the property is "no exception,
/// every reply well-formed, the daemon still serves".
/// </summary>
public class FuzzTests
{
    private static readonly string[] Paths = ["/", "/a", "/a/b", "rel", "rel/x", "@introduceDomain", "@releaseDomain", "/local/domain/1/x", "", "/a//b", "/a/", "/tool/xenstored"];
    private static readonly string[] Words = ["T", "F", "0", "1", "7", "-1", "4294967295", "b0", "r1", "w2", "n3", "x9", "help", "quota", "nodes", "tok", "on"];

    private static byte[] ValidMessage(Random rng)
    {
        var type = (XsMessageType)rng.Next(0, (int)XsMessageType.TypeCount);
        var sb = new StringBuilder();
        int strings = rng.Next(0, 4);
        for (int i = 0; i < strings; i++)
            sb.Append(rng.Next(2) == 0 ? Paths[rng.Next(Paths.Length)] : Words[rng.Next(Words.Length)]).Append('\0');
        var payload = Encoding.ASCII.GetBytes(sb.ToString());
        uint tx = rng.Next(4) == 0 ? (uint)rng.Next(0, 4) : 0;
        return RawConnection.Frame(type, (uint)rng.Next(), tx, payload);
    }

    private static byte[] Mutate(byte[] message, Random rng)
    {
        var m = new List<byte>(message);
        int edits = rng.Next(1, 5);
        for (int e = 0; e < edits && m.Count > 0; e++)
        {
            switch (rng.Next(6))
            {
                case 0: m[rng.Next(m.Count)] ^= (byte)(1 << rng.Next(8)); break;
                case 1: m.RemoveAt(rng.Next(m.Count)); break;
                case 2: m.Insert(rng.Next(m.Count + 1), (byte)rng.Next(256)); break;
                case 3: if (m.Count > 16) m.RemoveRange(16, rng.Next(m.Count - 16)); break;
                case 4: m[rng.Next(Math.Min(16, m.Count))] = (byte)rng.Next(256); break;
                default: m.AddRange(Enumerable.Range(0, rng.Next(1, 64)).Select(_ => (byte)rng.Next(256))); break;
            }
        }
        return [.. m];
    }

    /// <summary>Feeds one byte stream to a processor the way a connection pump does; returns false if the stream had to be dropped.</summary>
    internal static bool FeedProcessor(XsProcessor p, XsConnection c, ReadOnlySpan<byte> input)
    {
        while (true)
        {
            var status = XsFrameReader.TryRead(input, out var header, out var payload, out int consumed);
            if (status == XsFrameStatus.NeedMore)
                return true;
            if (status == XsFrameStatus.Oversized)
                return false;
            p.Process(c, header, payload);
            input = input[consumed..];
        }
    }

    private static void AssertRepliesWellFormed(XsConnection c)
    {
        if (!c.Output.TryTake(out var buffer, out int length))
            return;
        var span = buffer.AsSpan(0, length);
        while (!span.IsEmpty)
        {
            Assert.Equal(XsFrameStatus.Frame, XsFrameReader.TryRead(span, out var h, out _, out int consumed));
            Assert.True(h.Type < XsMessageType.TypeCount, h.ToString());
            span = span[consumed..];
        }
        c.Output.Return(buffer);
    }

    [Fact]
    public void Parser_and_handlers_survive_mutated_and_random_messages()
    {
        var rng = new Random(0x5EED);
        var p = new XsProcessor(new XenStoreQuotas());
        var dom0 = p.AddConnection(XsConnectionKind.Stream, 0, null);
        var dom1 = p.AddConnection(XsConnectionKind.Stream, 1, null);
        p.GetOrAddDomain(1);
        var clock = Stopwatch.StartNew();
        int iterations = 0;
        for (; iterations < 300_000 && clock.Elapsed < TimeSpan.FromSeconds(25); iterations++)
        {
            byte[] input = rng.Next(10) switch
            {
                0 => Enumerable.Range(0, rng.Next(1, 200)).Select(_ => (byte)rng.Next(256)).ToArray(),
                1 or 2 or 3 => ValidMessage(rng),
                _ => Mutate(ValidMessage(rng), rng),
            };
            var conn = rng.Next(2) == 0 ? dom0 : dom1;
            FeedProcessor(p, conn, input);
            p.Kicks.Clear();
            AssertRepliesWellFormed(dom0);
            AssertRepliesWellFormed(dom1);
            if (p.Store.NodeCount > 5000)
            {
                p = new XsProcessor(new XenStoreQuotas());
                dom0 = p.AddConnection(XsConnectionKind.Stream, 0, null);
                dom1 = p.AddConnection(XsConnectionKind.Stream, 1, null);
                p.GetOrAddDomain(1);
            }
        }
        Console.WriteLine($"fuzz: {iterations} inputs in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(iterations > 1000);
    }

    [Fact]
    public async Task Daemon_keeps_serving_while_clients_send_garbage_streams()
    {
        var rng = new Random(1234);
        await using var daemon = new XenStoreDaemon();
        for (int round = 0; round < 200; round++)
        {
            using var raw = new RawConnection(daemon.Connect((uint)rng.Next(0, 3)));
            var bytes = new List<byte>();
            for (int i = 0; i < 20; i++)
                bytes.AddRange(rng.Next(3) == 0 ? Mutate(ValidMessage(rng), rng) : ValidMessage(rng));
            await raw.SendAsync([.. bytes]);
        }
        await using var c = new XenStoreClient(daemon.Connect());
        await c.WriteAsync("/after/fuzz", "ok");
        Assert.Equal("ok", await c.ReadStringAsync("/after/fuzz"));
        Assert.Equal("OK", await c.ControlAsync("check"));
    }
}
