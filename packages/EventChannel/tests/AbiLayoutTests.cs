using System.Runtime.CompilerServices;
using VmmKit.Hypercall;
using VmmKit.TestSupport;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// Every mirrored struct and constant of xen/event_channel.h (and the shared_info/vcpu_info offsets
/// the 2-level ABI writes), checked with gcc against /usr/include/xen for x86-64 and i386.
/// </summary>
public class AbiLayoutTests
{
    private static readonly string[] Headers = ["xen/xen.h", "xen/event_channel.h"];

    private static List<(string, long)> StructChecks()
    {
        var l = new List<(string, long)>();
        void Size<T>(string c) => l.Add(($"sizeof({c})", Unsafe.SizeOf<T>()));
        void At(string c, string m, long off) => l.Add(($"offsetof({c}, {m})", off));

        var au = default(EvtchnAllocUnbound);
        Size<EvtchnAllocUnbound>("struct evtchn_alloc_unbound");
        At("struct evtchn_alloc_unbound", "dom", XenAbiLayout.Offset(ref au, ref au.Dom));
        At("struct evtchn_alloc_unbound", "remote_dom", XenAbiLayout.Offset(ref au, ref au.RemoteDom));
        At("struct evtchn_alloc_unbound", "port", XenAbiLayout.Offset(ref au, ref au.Port));

        var bi = default(EvtchnBindInterdomain);
        Size<EvtchnBindInterdomain>("struct evtchn_bind_interdomain");
        At("struct evtchn_bind_interdomain", "remote_dom", XenAbiLayout.Offset(ref bi, ref bi.RemoteDom));
        At("struct evtchn_bind_interdomain", "remote_port", XenAbiLayout.Offset(ref bi, ref bi.RemotePort));
        At("struct evtchn_bind_interdomain", "local_port", XenAbiLayout.Offset(ref bi, ref bi.LocalPort));

        var bv = default(EvtchnBindVirq);
        Size<EvtchnBindVirq>("struct evtchn_bind_virq");
        At("struct evtchn_bind_virq", "virq", XenAbiLayout.Offset(ref bv, ref bv.Virq));
        At("struct evtchn_bind_virq", "vcpu", XenAbiLayout.Offset(ref bv, ref bv.Vcpu));
        At("struct evtchn_bind_virq", "port", XenAbiLayout.Offset(ref bv, ref bv.Port));

        var bp = default(EvtchnBindPirq);
        Size<EvtchnBindPirq>("struct evtchn_bind_pirq");
        At("struct evtchn_bind_pirq", "pirq", XenAbiLayout.Offset(ref bp, ref bp.Pirq));
        At("struct evtchn_bind_pirq", "flags", XenAbiLayout.Offset(ref bp, ref bp.Flags));
        At("struct evtchn_bind_pirq", "port", XenAbiLayout.Offset(ref bp, ref bp.Port));
        l.Add(("BIND_PIRQ__WILL_SHARE", EvtchnBindPirq.WillShare));

        var ipi = default(EvtchnBindIpi);
        Size<EvtchnBindIpi>("struct evtchn_bind_ipi");
        At("struct evtchn_bind_ipi", "vcpu", XenAbiLayout.Offset(ref ipi, ref ipi.Vcpu));
        At("struct evtchn_bind_ipi", "port", XenAbiLayout.Offset(ref ipi, ref ipi.Port));

        Size<EvtchnClose>("struct evtchn_close");
        Size<EvtchnSend>("struct evtchn_send");
        Size<EvtchnUnmask>("struct evtchn_unmask");
        Size<EvtchnReset>("struct evtchn_reset");

        var st = default(EvtchnStatus);
        Size<EvtchnStatus>("struct evtchn_status");
        At("struct evtchn_status", "dom", XenAbiLayout.Offset(ref st, ref st.Dom));
        At("struct evtchn_status", "port", XenAbiLayout.Offset(ref st, ref st.Port));
        At("struct evtchn_status", "status", XenAbiLayout.Offset(ref st, ref st.Status));
        At("struct evtchn_status", "vcpu", XenAbiLayout.Offset(ref st, ref st.Vcpu));
        At("struct evtchn_status", "u", XenAbiLayout.Offset(ref st, ref st.U));
        At("struct evtchn_status", "u.unbound.dom", XenAbiLayout.Offset(ref st, ref st.U.Dom));
        At("struct evtchn_status", "u.interdomain.dom", XenAbiLayout.Offset(ref st, ref st.U.Dom));
        At("struct evtchn_status", "u.interdomain.port", XenAbiLayout.Offset(ref st, ref st.U.Port));
        At("struct evtchn_status", "u.pirq", XenAbiLayout.Offset(ref st, ref st.U.Pirq));
        At("struct evtchn_status", "u.virq", XenAbiLayout.Offset(ref st, ref st.U.Virq));
        l.Add(("sizeof(((struct evtchn_status *)0)->u)", Unsafe.SizeOf<EvtchnStatusUnion>()));

        var bvc = default(EvtchnBindVcpu);
        Size<EvtchnBindVcpu>("struct evtchn_bind_vcpu");
        At("struct evtchn_bind_vcpu", "port", XenAbiLayout.Offset(ref bvc, ref bvc.Port));
        At("struct evtchn_bind_vcpu", "vcpu", XenAbiLayout.Offset(ref bvc, ref bvc.Vcpu));

        var ic = default(EvtchnInitControl);
        Size<EvtchnInitControl>("struct evtchn_init_control");
        At("struct evtchn_init_control", "control_gfn", XenAbiLayout.Offset(ref ic, ref ic.ControlGfn));
        At("struct evtchn_init_control", "offset", XenAbiLayout.Offset(ref ic, ref ic.Offset));
        At("struct evtchn_init_control", "vcpu", XenAbiLayout.Offset(ref ic, ref ic.Vcpu));
        At("struct evtchn_init_control", "link_bits", XenAbiLayout.Offset(ref ic, ref ic.LinkBits));
        At("struct evtchn_init_control", "_pad", XenAbiLayout.Offset(ref ic, ref ic.Pad));

        Size<EvtchnExpandArray>("struct evtchn_expand_array");
        var sp = default(EvtchnSetPriority);
        Size<EvtchnSetPriority>("struct evtchn_set_priority");
        At("struct evtchn_set_priority", "port", XenAbiLayout.Offset(ref sp, ref sp.Port));
        At("struct evtchn_set_priority", "priority", XenAbiLayout.Offset(ref sp, ref sp.Priority));

        var cb = default(EvtchnFifoControlBlock);
        Size<EvtchnFifoControlBlock>("struct evtchn_fifo_control_block");
        At("struct evtchn_fifo_control_block", "ready", XenAbiLayout.Offset(ref cb, ref cb.Ready));
        At("struct evtchn_fifo_control_block", "_rsvd", XenAbiLayout.Offset(ref cb, ref cb.Reserved));
        At("struct evtchn_fifo_control_block", "head", XenAbiLayout.Offset(ref cb, ref cb.Head));
        At("struct evtchn_fifo_control_block", "head[15]", XenAbiLayout.Offset(ref cb, ref cb.Head[15]));
        return l;
    }

    [Fact]
    public void Evtchn_structs_match_xen_headers_64_bit() => XenAbiLayout.AssertValues(Headers, 64, StructChecks());

    [Fact]
    public void Evtchn_structs_match_xen_headers_32_bit() => XenAbiLayout.AssertValues(Headers, 32, StructChecks());

    [Fact]
    public void Constants_match_xen_headers()
    {
        var l = new List<(string, long)>();
        string[] ops = ["bind_interdomain", "bind_virq", "bind_pirq", "close", "send", "status", "alloc_unbound", "bind_ipi", "bind_vcpu", "unmask", "reset", "init_control", "expand_array", "set_priority"];
        EventChannelOp[] values = [EventChannelOp.BindInterdomain, EventChannelOp.BindVirq, EventChannelOp.BindPirq, EventChannelOp.Close, EventChannelOp.Send, EventChannelOp.Status,
            EventChannelOp.AllocUnbound, EventChannelOp.BindIpi, EventChannelOp.BindVcpu, EventChannelOp.Unmask, EventChannelOp.Reset, EventChannelOp.InitControl, EventChannelOp.ExpandArray, EventChannelOp.SetPriority];
        for (int i = 0; i < ops.Length; i++)
            l.Add(($"EVTCHNOP_{ops[i]}", (long)values[i]));
        Assert.Equal(ops.Length, Enum.GetValues<EventChannelOp>().Length);

        foreach (var (name, v) in new[] { ("closed", EventChannelStatusCode.Closed), ("unbound", EventChannelStatusCode.Unbound), ("interdomain", EventChannelStatusCode.Interdomain),
                                           ("pirq", EventChannelStatusCode.Pirq), ("virq", EventChannelStatusCode.Virq), ("ipi", EventChannelStatusCode.Ipi) })
            l.Add(($"EVTCHNSTAT_{name}", (long)v));

        foreach (var (name, v) in new[] { ("TIMER", Virq.Timer), ("DEBUG", Virq.Debug), ("CONSOLE", Virq.Console), ("DOM_EXC", Virq.DomExc), ("TBUF", Virq.Tbuf),
                                           ("DEBUGGER", Virq.Debugger), ("XENOPROF", Virq.Xenoprof), ("CON_RING", Virq.ConRing), ("PCPU_STATE", Virq.PcpuState),
                                           ("MEM_EVENT", Virq.MemEvent), ("ARGO", Virq.Argo), ("ENOMEM", Virq.Enomem), ("XENPMU", Virq.Xenpmu), ("ARCH_0", Virq.Arch0), ("ARCH_7", Virq.Arch7) })
            l.Add(($"VIRQ_{name}", (long)v));
        l.Add(("NR_VIRQS", VirqRules.Count));

        l.Add(("EVTCHN_FIFO_PENDING", FifoEventWord.PendingBit));
        l.Add(("EVTCHN_FIFO_MASKED", FifoEventWord.MaskedBit));
        l.Add(("EVTCHN_FIFO_LINKED", FifoEventWord.LinkedBit));
        l.Add(("EVTCHN_FIFO_BUSY", FifoEventWord.BusyBit));
        l.Add(("EVTCHN_FIFO_LINK_BITS", FifoEventWord.LinkBits));
        l.Add(("EVTCHN_FIFO_LINK_MASK", FifoEventWord.LinkMask));
        l.Add(("EVTCHN_FIFO_NR_CHANNELS", FifoEventWord.NrChannels));
        l.Add(("EVTCHN_FIFO_PRIORITY_MAX", FifoEventWord.PriorityMax));
        l.Add(("EVTCHN_FIFO_PRIORITY_DEFAULT", FifoEventWord.PriorityDefault));
        l.Add(("EVTCHN_FIFO_PRIORITY_MIN", FifoEventWord.PriorityMin));
        l.Add(("EVTCHN_FIFO_MAX_QUEUES", FifoEventWord.MaxQueues));
        l.Add(("sizeof(event_word_t)", sizeof(uint)));
        l.Add(("__HYPERVISOR_event_channel_op", (long)HypercallNumber.EventChannelOp));
        XenAbiLayout.AssertValues(Headers, 64, l);
    }

    [Fact]
    public void Two_level_offsets_match_shared_info_and_vcpu_info()
    {
        XenAbiLayout.AssertValues(Headers, 64, [
            ("offsetof(struct shared_info, evtchn_pending)", TwoLevelAbi.PendingOffset64),
            ("offsetof(struct shared_info, evtchn_mask)", TwoLevelAbi.MaskOffset64),
            ("offsetof(struct vcpu_info, evtchn_pending_sel)", TwoLevelAbi.PendingSelOffset64),
            ("offsetof(struct vcpu_info, evtchn_upcall_pending)", 0),
            ("offsetof(struct vcpu_info, evtchn_upcall_mask)", 1),
            ("sizeof(struct vcpu_info)", 64),
            ("EVTCHN_2L_NR_CHANNELS", TwoLevelAbi.NrChannels64),
        ]);
        XenAbiLayout.AssertValues(Headers, 32, [
            ("offsetof(struct shared_info, evtchn_pending)", TwoLevelAbi.PendingOffset32),
            ("offsetof(struct shared_info, evtchn_mask)", TwoLevelAbi.MaskOffset32),
            ("offsetof(struct vcpu_info, evtchn_pending_sel)", TwoLevelAbi.PendingSelOffset32),
            ("sizeof(struct vcpu_info)", 64),
            ("EVTCHN_2L_NR_CHANNELS", TwoLevelAbi.NrChannels32),
        ]);
    }

    /// <summary>The /dev/xen/evtchn ioctl numbers the README gives for a Linux client.</summary>
    [Fact]
    public void Readme_ioctl_numbers_match_linux_evtchn_header()
    {
        (string Name, long Value)[] documented =
        [
            ("IOCTL_EVTCHN_BIND_VIRQ", 0x00044500), ("IOCTL_EVTCHN_BIND_INTERDOMAIN", 0x00084501),
            ("IOCTL_EVTCHN_BIND_UNBOUND_PORT", 0x00044502), ("IOCTL_EVTCHN_UNBIND", 0x00044503),
            ("IOCTL_EVTCHN_NOTIFY", 0x00044504), ("IOCTL_EVTCHN_RESET", 0x00004505), ("IOCTL_EVTCHN_RESTRICT_DOMID", 0x00024506),
        ];
        var values = XenAbiLayout.Evaluate(["sys/ioctl.h", "xen/xen.h", "xen/sys/evtchn.h"], documented.Select(d => d.Name).ToList());
        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        for (int i = 0; i < documented.Length; i++)
        {
            Assert.Equal(documented[i].Value, values[i]);
            Assert.Contains($"`{documented[i].Name}` | `0x{documented[i].Value:x8}`", readme);
        }
    }
}
