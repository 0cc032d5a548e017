using VmmKit.EventChannel;
using VmmKit.GrantTable;
using VmmKit.XenStore.Transports;

namespace VmmKit.ReferenceHypervisor.Pv;

/// <summary>
/// A guest's XenStore ring as xenstored reaches it: the page mapped by grant (<c>GNTTAB_RESERVED_XENSTORE</c>, seeded by
/// the toolstack) and the kick sent on the port bound to HVM_PARAM_STORE_EVTCHN.
/// </summary>
internal sealed class GrantedStoreRing(IGrantMapper mapper, GrantMapping page, IEventChannelClient events, uint port, PvActivity activity)
    : IXenStoreRingPage, IXenStoreEventNotifier
{
    private readonly GrantMapping _page = page;

    /// <summary>The local (Dom0) port.</summary>
    public uint Port => port;

    /// <summary>The mapping.</summary>
    public GrantMapping Mapping => _page;

    /// <inheritdoc/>
    public Span<byte> Span => mapper.GetPage(_page);

    /// <summary>
    /// Whether the guest produced request bytes xenstored has not consumed: <c>req_cons != req_prod</c> of
    /// <c>xenstore_domain_interface</c> (io/xs_wire.h: req[1024], rsp[1024], then req_cons, req_prod).
    /// </summary>
    public bool HasUnreadRequests
    {
        get
        {
            try
            {
                Span<byte> page = Span;
                return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(page[ReqConsOffset..])
                    != System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(page[(ReqConsOffset + 4)..]);
            }
            catch (ArgumentException)
            {
                return false; // unmapped (the services are stopping)
            }
        }
    }

    private const int ReqConsOffset = 2048;

    /// <inheritdoc/>
    public void Notify()
    {
        try
        {
            events.Notify(port);
        }
        catch (EventChannelException)
        {
            // The guest is gone; nothing to kick.
        }

        activity.Answered();
    }
}
