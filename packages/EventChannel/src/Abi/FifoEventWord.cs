namespace VmmKit.EventChannel;

/// <summary>
/// The FIFO ABI's <c>event_word_t</c> bits and limits (xen/event_channel.h). A word is
/// <c>PENDING | MASKED | LINKED | BUSY | LINK[16:0]</c>; the guest and the hypervisor update it
/// with atomic operations only.
/// </summary>
public static class FifoEventWord
{
    /// <summary><c>EVTCHN_FIFO_PENDING</c> (bit 31).</summary>
    public const int PendingBit = 31;
    /// <summary><c>EVTCHN_FIFO_MASKED</c> (bit 30).</summary>
    public const int MaskedBit = 30;
    /// <summary><c>EVTCHN_FIFO_LINKED</c> (bit 29): the event is on a queue.</summary>
    public const int LinkedBit = 29;
    /// <summary><c>EVTCHN_FIFO_BUSY</c> (bit 28): the hypervisor is updating LINK; the guest must not unmask.</summary>
    public const int BusyBit = 28;

    /// <summary>Mask of <see cref="PendingBit"/>.</summary>
    public const uint Pending = 1u << PendingBit;
    /// <summary>Mask of <see cref="MaskedBit"/>.</summary>
    public const uint Masked = 1u << MaskedBit;
    /// <summary>Mask of <see cref="LinkedBit"/>.</summary>
    public const uint Linked = 1u << LinkedBit;
    /// <summary>Mask of <see cref="BusyBit"/>.</summary>
    public const uint Busy = 1u << BusyBit;

    /// <summary><c>EVTCHN_FIFO_LINK_BITS</c>.</summary>
    public const int LinkBits = 17;
    /// <summary><c>EVTCHN_FIFO_LINK_MASK</c>: the next port on the queue, 0 for none.</summary>
    public const uint LinkMask = (1u << LinkBits) - 1;
    /// <summary><c>EVTCHN_FIFO_NR_CHANNELS</c>: ports the FIFO ABI can address.</summary>
    public const int NrChannels = 1 << LinkBits;

    /// <summary><c>EVTCHN_FIFO_PRIORITY_MAX</c>: the highest priority.</summary>
    public const int PriorityMax = 0;
    /// <summary><c>EVTCHN_FIFO_PRIORITY_DEFAULT</c>.</summary>
    public const int PriorityDefault = 7;
    /// <summary><c>EVTCHN_FIFO_PRIORITY_MIN</c>: the lowest priority.</summary>
    public const int PriorityMin = 15;
    /// <summary><c>EVTCHN_FIFO_MAX_QUEUES</c>: one queue per priority per vCPU.</summary>
    public const int MaxQueues = PriorityMin + 1;

    /// <summary>Event words in one 4 KiB event array page (Xen's <c>EVTCHN_FIFO_EVENT_WORDS_PER_PAGE</c>).</summary>
    public const int WordsPerPage = 4096 / sizeof(uint);
    /// <summary>Event array pages needed for every FIFO port (Xen's <c>EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES</c>).</summary>
    public const int MaxEventArrayPages = NrChannels / WordsPerPage;
}
