using System.Runtime.InteropServices;
using System.Text;
using VmmKit.Backends.Console;
using VmmKit.Backends.Xenbus;
using VmmKit.GrantTable;

namespace VmmKit.Backends.Tests;

/// <summary>The console backend against a C# console frontend (the guest's side of xen/io/console.h) in d1's frame 5.</summary>
public sealed class ConsoleBackendTests : IAsyncLifetime
{
    private const int RingFrame = 5;
    private readonly TestWorld _w = new();
    private readonly MemoryStream _sink = new();
    private readonly CancellationTokenSource _stop = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        _stop.Cancel();
        await _w.DisposeAsync();
    }

    private ref XenconsInterface Ring => ref MemoryMarshal.AsRef<XenconsInterface>(_w.Page(RingFrame));

    private void GuestWrite(string text)
    {
        ref var r = ref Ring;
        foreach (byte b in Encoding.ASCII.GetBytes(text))
            r.Out[(int)(r.OutProd++ & (XenconsInterface.OutSize - 1))] = b;
    }

    private string Sink() => Encoding.ASCII.GetString(_sink.ToArray());

    private (ConsoleBackend Backend, VmmKit.EventChannel.InProcessEventChannelClient Guest, uint GuestPort) StartPrimary()
    {
        // The toolstack: an unbound port for d0 and the ring seeded as GNTTAB_RESERVED_CONSOLE.
        var guest = _w.Dom1Events.Open();
        uint port = guest.BindUnboundPort(0);
        _w.SeedReservedGrant(ConsoleBackend.ReservedConsoleGrant, RingFrame);
        var backend = new ConsoleBackend(_w.Dom0Events.Open(), _w.Mapper, _sink);
        Assert.Equal(GrantStatus.Okay, backend.ConnectPrimary(1, port));
        _ = backend.RunAsync(_stop.Token);
        return (backend, guest, port);
    }

    [Fact]
    public void Guest_output_reaches_the_sink_on_notify_and_input_reaches_the_in_ring()
    {
        var (backend, guest, port) = StartPrimary();
        GuestWrite("hello from d1\n");
        guest.Notify(port);
        TestWorld.Until(() => Sink() == "hello from d1\n", "output");
        Assert.Equal(Ring.OutProd, Ring.OutCons);

        Assert.Equal(3, backend.WriteInput("ls\n"u8));
        Assert.Equal(3u, Ring.InProd);
        Assert.Equal("ls\n", Encoding.ASCII.GetString(((ReadOnlySpan<byte>)Ring.In)[..3]));
        // The in ring holds 1024 bytes: input beyond what the guest consumed is refused.
        Assert.Equal(1021, backend.WriteInput(new byte[2000]));
        Assert.Equal(0, backend.WriteInput("x"u8));
    }

    [Fact]
    public void Output_wrapping_around_the_ring_arrives_in_order()
    {
        var (backend, guest, port) = StartPrimary();
        var expected = new StringBuilder();
        for (int i = 0; i < 50; i++)
        {
            string line = $"line {i:D3} {new string((char)('a' + (i % 26)), 90)}\n";
            GuestWrite(line);
            expected.Append(line);
            guest.Notify(port);
            TestWorld.Until(() => Ring.OutCons == Ring.OutProd, "drained");
        }

        Assert.Equal(expected.ToString(), Sink());
        Assert.True(Ring.OutProd > XenconsInterface.OutSize);
        Assert.Equal(Ring.OutProd, (uint)backend.OutputBytes);
    }

    // Xen 4.17's xenconsoled io.c, buffer_append: indexes claiming more than sizeof(intf->out) are ignored; nothing
    // is read, out_cons is not written and the guest is not notified (its console stays stuck until it fixes them).
    // ring_free_bytes likewise gives no input to an `in` ring whose indexes claim more than it holds.
    [Fact]
    public void Corrupt_indexes_are_left_alone_not_trusted()
    {
        var (backend, guest, port) = StartPrimary();
        Ring.OutProd = 1_000_000;
        Ring.OutCons = 5;
        guest.Notify(port);
        TestWorld.Until(() => backend.CorruptIndexes == 1, "ignored");
        Assert.Equal(5u, Ring.OutCons);
        Assert.Equal(1_000_000u, Ring.OutProd);
        Assert.Equal("", Sink());
        Ring.InProd = 5000; // the guest cannot make the backend overrun its own ring either
        Assert.Equal(0, backend.WriteInput("x"u8));
        Assert.Equal(5000u, Ring.InProd);
        Ring.OutProd = 5; // the guest puts its indexes right: served again
        GuestWrite("after\n");
        guest.Notify(port);
        TestWorld.Until(() => Sink() == "after\n", "served again");
    }

    [Fact]
    public void A_ring_that_is_not_granted_is_refused()
    {
        var guest = _w.Dom1Events.Open();
        uint port = guest.BindUnboundPort(0);
        using var backend = new ConsoleBackend(_w.Dom0Events.Open(), _w.Mapper, _sink);
        Assert.NotEqual(GrantStatus.Okay, backend.ConnectPrimary(1, port));
        Assert.False(backend.IsConnected);
    }

    [Fact]
    public async Task A_secondary_console_connects_through_the_xenbus_handshake()
    {
        var (be, fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "console", 1, [new("protocol", "vt100")]);
        using var backend = new ConsoleBackend(_w.Dom0Events.Open(), _w.Mapper, _sink);
        _ = backend.RunXenbusAsync(new XenbusBackendDevice(_w.Store0, be, fe, 1), _stop.Token);
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "2", "InitWait");

        var guest = _w.Dom1Events.Open();
        uint port = guest.BindUnboundPort(0);
        Assert.True(_w.Share.TryGrantForeignAccess(0, RingFrame, false, out uint gref));
        await _w.Store1.WriteAsync($"{fe}/ring-ref", gref.ToString());
        await _w.Store1.WriteAsync($"{fe}/port", port.ToString());
        await _w.Store1.WriteAsync($"{fe}/state", "3");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "4", "Connected");
        GuestWrite("hvc1\n");
        guest.Notify(port);
        TestWorld.Until(() => Sink() == "hvc1\n", "output");

        await _w.Store1.WriteAsync($"{fe}/state", "6");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "6", "Closed");
        Assert.False(backend.IsConnected);
        Assert.True(_w.Share.EndForeignAccess(gref));
    }
}
