using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.EventChannel;

// The argument structs of EVTCHNOP_* (xen/event_channel.h). Every member is a fixed-width type,
// so the layout is the same for 64-bit and 32-bit callers (checked against gcc -m64 and -m32).

/// <summary><c>struct evtchn_alloc_unbound</c>: allocate a port in <see cref="Dom"/> for <see cref="RemoteDom"/> to bind to later.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnAllocUnbound
{
    /// <summary><c>dom</c> (IN): the domain to allocate in, or <c>DOMID_SELF</c>.</summary>
    public ushort Dom;
    /// <summary><c>remote_dom</c> (IN): the domain that may bind, or <c>DOMID_SELF</c>.</summary>
    public ushort RemoteDom;
    /// <summary><c>port</c> (OUT).</summary>
    public uint Port;
}

/// <summary><c>struct evtchn_bind_interdomain</c>: connect a new local port to <see cref="RemotePort"/> of <see cref="RemoteDom"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnBindInterdomain
{
    /// <summary><c>remote_dom</c> (IN).</summary>
    public ushort RemoteDom;
    /// <summary><c>remote_port</c> (IN): an unbound port allocated for the caller.</summary>
    public uint RemotePort;
    /// <summary><c>local_port</c> (OUT).</summary>
    public uint LocalPort;
}

/// <summary><c>struct evtchn_bind_virq</c>: bind <see cref="Virq"/> on <see cref="Vcpu"/> to a new port.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnBindVirq
{
    /// <summary><c>virq</c> (IN): a <see cref="EventChannel.Virq"/> value.</summary>
    public uint Virq;
    /// <summary><c>vcpu</c> (IN).</summary>
    public uint Vcpu;
    /// <summary><c>port</c> (OUT).</summary>
    public uint Port;
}

/// <summary><c>struct evtchn_bind_pirq</c>: bind a physical IRQ to a new port.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnBindPirq
{
    /// <summary><c>BIND_PIRQ__WILL_SHARE</c>.</summary>
    public const uint WillShare = 1;
    /// <summary><c>pirq</c> (IN).</summary>
    public uint Pirq;
    /// <summary><c>flags</c> (IN): <see cref="WillShare"/>.</summary>
    public uint Flags;
    /// <summary><c>port</c> (OUT).</summary>
    public uint Port;
}

/// <summary><c>struct evtchn_bind_ipi</c>: a new port for IPIs to <see cref="Vcpu"/> of the caller.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnBindIpi
{
    /// <summary><c>vcpu</c> (IN).</summary>
    public uint Vcpu;
    /// <summary><c>port</c> (OUT).</summary>
    public uint Port;
}

/// <summary><c>struct evtchn_close</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnClose
{
    /// <summary><c>port</c> (IN).</summary>
    public uint Port;
}

/// <summary><c>struct evtchn_send</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnSend
{
    /// <summary><c>port</c> (IN).</summary>
    public uint Port;
}

/// <summary><c>struct evtchn_status</c>: the state of <see cref="Port"/> in <see cref="Dom"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnStatus
{
    /// <summary><c>dom</c> (IN).</summary>
    public ushort Dom;
    /// <summary><c>port</c> (IN).</summary>
    public uint Port;
    /// <summary><c>status</c> (OUT): an <see cref="EventChannelStatusCode"/>.</summary>
    public uint Status;
    /// <summary><c>vcpu</c> (OUT): the vCPU notified.</summary>
    public uint Vcpu;
    /// <summary><c>u</c> (OUT).</summary>
    public EvtchnStatusUnion U;
}

/// <summary>The union <c>u</c> of <c>struct evtchn_status</c>, 8 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct EvtchnStatusUnion
{
    /// <summary><c>u.unbound.dom</c> and <c>u.interdomain.dom</c>.</summary>
    [FieldOffset(0)] public ushort Dom;
    /// <summary><c>u.interdomain.port</c>.</summary>
    [FieldOffset(4)] public uint Port;
    /// <summary><c>u.pirq</c>.</summary>
    [FieldOffset(0)] public uint Pirq;
    /// <summary><c>u.virq</c>.</summary>
    [FieldOffset(0)] public uint Virq;
}

/// <summary><c>struct evtchn_bind_vcpu</c>: notify <see cref="Vcpu"/> for <see cref="Port"/> from now on.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnBindVcpu
{
    /// <summary><c>port</c> (IN).</summary>
    public uint Port;
    /// <summary><c>vcpu</c> (IN).</summary>
    public uint Vcpu;
}

/// <summary><c>struct evtchn_unmask</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnUnmask
{
    /// <summary><c>port</c> (IN).</summary>
    public uint Port;
}

/// <summary><c>struct evtchn_reset</c>: close every port of <see cref="Dom"/> and return it to the 2-level ABI.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnReset
{
    /// <summary><c>dom</c> (IN).</summary>
    public ushort Dom;
}

/// <summary><c>struct evtchn_init_control</c>: register a vCPU's FIFO control block (switches the domain to the FIFO ABI).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnInitControl
{
    /// <summary><c>control_gfn</c> (IN): the guest frame holding the control block.</summary>
    public ulong ControlGfn;
    /// <summary><c>offset</c> (IN): byte offset of the block in the frame, 8-byte aligned.</summary>
    public uint Offset;
    /// <summary><c>vcpu</c> (IN).</summary>
    public uint Vcpu;
    /// <summary><c>link_bits</c> (OUT): <see cref="FifoEventWord.LinkBits"/>.</summary>
    public byte LinkBits;
    /// <summary><c>_pad[7]</c>.</summary>
    public Pad7 Pad;

    /// <summary><c>uint8_t[7]</c>.</summary>
    [InlineArray(7)]
    public struct Pad7 { private byte _element0; }
}

/// <summary><c>struct evtchn_expand_array</c>: add one event array page.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnExpandArray
{
    /// <summary><c>array_gfn</c> (IN).</summary>
    public ulong ArrayGfn;
}

/// <summary><c>struct evtchn_set_priority</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnSetPriority
{
    /// <summary><c>port</c> (IN).</summary>
    public uint Port;
    /// <summary><c>priority</c> (IN): 0 (highest) to 15 (lowest).</summary>
    public uint Priority;
}

/// <summary><c>struct evtchn_fifo_control_block</c>: one per vCPU in guest memory, 72 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EvtchnFifoControlBlock
{
    /// <summary><c>ready</c>: bit <c>q</c> set when queue <c>q</c> has events.</summary>
    public uint Ready;
    /// <summary><c>_rsvd</c>.</summary>
    public uint Reserved;
    /// <summary><c>head[EVTCHN_FIFO_MAX_QUEUES]</c>: first port of each queue.</summary>
    public Heads Head;

    /// <summary><c>uint32_t[16]</c>.</summary>
    [InlineArray(FifoEventWord.MaxQueues)]
    public struct Heads { private uint _element0; }
}
