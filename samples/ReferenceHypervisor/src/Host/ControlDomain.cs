using System.Buffers.Binary;
using VmmKit.Ept;
using VmmKit.EventChannel;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// Domain 0 inside the hypervisor: a real, privileged domain with its own RAM (machine-contiguous, so Dom0 finds it at one
/// offset of the machine-memory file) and event channels, but no vCPU: the Dom0 channel is its processor. Its hypercalls
/// run through the machine's hypercall table as a stand-in vCPU that never executes; its events become EVENT messages,
/// delivered once per firing and masked until Dom0 unmasks the port (as Linux's /dev/xen/evtchn does).
/// </summary>
internal sealed unsafe class ControlDomain : IEventChannelUpcall
{
    private readonly Machine _machine;
    private readonly ulong[] _delivered = new ulong[64];

    /// <summary>Creates domain 0 with <paramref name="pages"/> of RAM on <paramref name="machine"/>.</summary>
    public ControlDomain(Machine machine, ulong pages)
    {
        _machine = machine;
        Domain = new Domain(machine, 0, "Domain-0", maxVcpus: 1, privileged: true, upcall: this);
        machine.AddDomain(Domain);
        FirstFrame = Domain.PopulateContiguous(pages);
        Caller = new VirtualCpu(Domain, 0, machine.CreateProcessor());
        // The stand-in vCPU reads as 64-bit long mode (CR0.PE|PG, EFER.LMA, CS.L), so handlers see Dom0 as a 64-bit caller.
        Caller.Vmcs.Write(VmcsField.GuestCr0, VmcsBuilder.Cr0Pe | VmcsBuilder.Cr0Pg);
        Caller.Vmcs.Write(VmcsField.GuestIa32Efer, (1ul << 8) | (1ul << 10));
        Caller.Vmcs.Write(VmcsField.GuestCsAccessRights, 0xA09B);
        Caller.Vmcs.Write(VmcsField.VmEntryControls, (ulong)VmEntryControls.Ia32eModeGuest);
        Memory = new PagingDisabledGuestMemory(Domain.Physical);
        // Global VIRQs go to the hardware domain until the toolstack says otherwise (Xen's get_global_virq_handler).
        machine.Events.SetGlobalVirqHandler(Virq.DomExc, Domain.Events);
    }

    /// <summary>Domain 0.</summary>
    public Domain Domain { get; }

    /// <summary>The machine frame of Dom0's guest-physical page 0.</summary>
    public MachineFrameNumber FirstFrame { get; }

    /// <summary>The caller passed to the hypercall table for Dom0's hypercalls.</summary>
    public VirtualCpu Caller { get; }

    /// <summary>
    /// Dom0's pointer arguments: a pointer is a guest-physical address of domain 0 (identity, no paging), so Xen's
    /// structs are exchanged in Xen's layout in the memory Dom0 shares with the hypervisor, as privcmd's buffers are.
    /// </summary>
    public PagingDisabledGuestMemory Memory { get; }

    /// <summary>
    /// Where EVENT messages go; null while no Dom0 is connected (ports then stay pending until one is). False from the
    /// sink means its queue is full: the port stays pending and unmasked, to be sent by <see cref="RedeliverPending"/>.
    /// </summary>
    public Func<uint, bool>? EventSink { get; set; }

    /// <summary>The upcall: takes each pending, unmasked port (mask, then clear pending) and sends it to Dom0.</summary>
    void IEventChannelUpcall.RaiseUpcall(EventChannelDomain domain, int vcpu) => DeliverPending();

    /// <summary>Sends every pending, unmasked port (also run when a Dom0 connects, for events that fired meanwhile).</summary>
    public void DeliverPending()
    {
        if (EventSink is not { } sink)
            return;
        byte* shared = _machine.Memory.GetFramePointer(Domain.SharedInfoFrame);
        // shared_info (xen.h, 64-bit): vcpu_info[0] at 0 (evtchn_upcall_pending at 0, evtchn_pending_sel at 8),
        // evtchn_pending[64] at 2048, evtchn_mask[64] at 2560.
        ulong* pending = (ulong*)(shared + 2048);
        ulong* mask = (ulong*)(shared + 2560);
        ulong* selector = (ulong*)(shared + 8);
        while (true)
        {
            Volatile.Write(ref *shared, (byte)0);
            ulong words = Interlocked.Exchange(ref *selector, 0);
            if (words == 0)
                return;
            while (words != 0)
            {
                int w = System.Numerics.BitOperations.TrailingZeroCount(words);
                words &= words - 1;
                ulong bits = Volatile.Read(ref pending[w]) & ~Volatile.Read(ref mask[w]);
                while (bits != 0)
                {
                    int b = System.Numerics.BitOperations.TrailingZeroCount(bits);
                    bits &= bits - 1;
                    ulong bit = 1UL << b;
                    Interlocked.Or(ref mask[w], bit);
                    Interlocked.And(ref pending[w], ~bit);
                    bool sent = sink((uint)((w * 64) + b));
                    if (sent)
                        Interlocked.Or(ref _delivered[w], bit);
                    else
                    {
                        // The queue to Dom0 is full: the port stays as it was (pending, unmasked), its word and the
                        // words not looked at yet stay selected, and RedeliverPending picks them up when it drains.
                        Interlocked.Or(ref pending[w], bit);
                        Interlocked.And(ref mask[w], ~bit);
                        Interlocked.Or(ref *selector, words | (1UL << w));
                        return;
                    }
                }
            }
        }
    }

    /// <summary>
    /// Whether an event sent to Dom0 is not served yet: its port is still masked since the delivery (Dom0 unmasks a port
    /// when it has handled the event, as a user of /dev/xen/evtchn does). Ports Dom0 unmasked are forgotten here.
    /// </summary>
    public bool HoldsWork
    {
        get
        {
            // shared_info (xen.h, 64-bit): evtchn_mask[64] at 2560, as in DeliverPending.
            byte* shared = _machine.Memory.GetFramePointer(Domain.SharedInfoFrame);
            ulong* mask = (ulong*)(shared + 2560);
            bool held = false;
            for (int w = 0; w < _delivered.Length; w++)
            {
                if (Volatile.Read(ref _delivered[w]) == 0)
                    continue;
                ulong masked = Volatile.Read(ref mask[w]);
                held |= (Interlocked.And(ref _delivered[w], masked) & masked) != 0;
            }

            return held;
        }
    }

    /// <summary>Dom0 went: the events it held are gone with its ports.</summary>
    public void ForgetDelivered() => Array.Clear(_delivered);

    /// <summary>
    /// A new Dom0 connected, or the queue to it drained after an overflow: ports that fired meanwhile (pending, and not
    /// masked by a delivery) are raised again by marking their words in the selector.
    /// </summary>
    public void RedeliverPending()
    {
        byte* shared = _machine.Memory.GetFramePointer(Domain.SharedInfoFrame);
        ulong* pending = (ulong*)(shared + 2048);
        ulong* selector = (ulong*)(shared + 8);
        for (int w = 0; w < 64; w++)
        {
            if (Volatile.Read(ref pending[w]) != 0)
                Interlocked.Or(ref *selector, 1UL << w);
        }

        DeliverPending();
    }

    /// <summary>The WELCOME payload (docs/dom0-abi.md): machine bytes, Dom0's first frame, its pages, its shared_info frame.</summary>
    public void WriteWelcome(Span<byte> payload)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(payload, _machine.Memory.SizeInBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[8..], FirstFrame.Value);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[16..], Domain.PopulatedPages);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[24..], Domain.SharedInfoFrame.Value);
    }
}
