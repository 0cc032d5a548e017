using System.Net.Sockets;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;

namespace VmmKit.XenStore.Tests.XenOracle;

/// <summary>Our XenStoreDaemon on a private socket, with introduced domains' rings in memory.</summary>
internal sealed class OurDaemonSide(XenStoreQuotas quotas) : IXsSide
{
    private readonly RingTests.Connector _connector = new();
    private TestDaemon? _daemon;

    public string Name => "ours";

    private TestDaemon Daemon => _daemon ??= new TestDaemon(new XenStoreDaemonOptions { DomainConnector = _connector, Quotas = quotas });

    public void Start() => _ = Daemon;

    public async Task<RawConnection> ConnectSocketAsync()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await s.ConnectAsync(new UnixDomainSocketEndPoint(Daemon.SocketPath));
        }
        catch
        {
            s.Dispose();
            throw;
        }
        return new RawConnection(new NetworkStream(s, ownsSocket: true));
    }

    public void PrepareDomain(uint domid)
    {
    }

    public RawConnection OpenGuest(uint domid) => new(_connector.GuestStream(domid));

    public async ValueTask DisposeAsync()
    {
        if (_daemon is not null)
            await _daemon.DisposeAsync();
    }
}
