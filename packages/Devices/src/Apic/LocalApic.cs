using System.Numerics;

namespace VmmKit.Devices;

/// <summary>
/// A local APIC (Intel SDM Vol. 3A chapter 11) for one vCPU: xAPIC registers in the 4 KiB MMIO page at
/// the APIC base (as an <see cref="IBusDevice"/>) and x2APIC registers in MSRs 0x800-0x8FF
/// (<see cref="ReadMsr"/>/<see cref="WriteMsr"/>, which also serve IA32_APIC_BASE and
/// IA32_TSC_DEADLINE). It keeps IRR/ISR/TMR with the SDM's priority rules, the LVT (timer, thermal,
/// performance counters, LINT0, LINT1, error), the timer in one-shot, periodic and TSC-deadline modes
/// counting <see cref="IGuestClock"/> ticks, and the ICR, whose IPIs go to an <see cref="IApicIpiSink"/>.
/// </summary>
/// <remarks>
/// <para>
/// The VMM delivers the APIC's interrupts by VM-entry event injection: before an entry, when the guest
/// can take an interrupt, it asks <see cref="HasPendingInterrupt"/>, calls
/// <see cref="AcknowledgeInterrupt"/> (IRR to ISR, the INTA cycle) and injects the vector; otherwise
/// it requests an interrupt window. <see cref="NextTimerInterrupt"/> tells it when the timer raises an
/// interrupt, to program the VMX-preemption timer (<see cref="MinimumTimerPeriod"/> bounds how often);
/// <see cref="ILocalApicHost.InterruptPending"/> tells it (on any thread) that a halted or running vCPU
/// must be kicked.
/// </para>
/// <para>
/// Thread-safety: one lock guards the state. The register interfaces, the acknowledge calls and
/// anything that reads the clock are for the vCPU's own thread; <see cref="RequestInterrupt"/>,
/// <see cref="RequestNmi"/>, <see cref="RequestInit"/> and <see cref="RequestStartup"/> may be called
/// from any thread. Host and IPI-sink calls are made outside the lock.
/// </para>
/// </remarks>
public sealed partial class LocalApic : IBusDevice
{
    /// <summary>The architectural default APIC base, 0xFEE00000 (SDM Vol. 3A §11.4.1).</summary>
    public const ulong DefaultBaseAddress = 0xFEE0_0000;

    /// <summary>Bytes of the xAPIC register page.</summary>
    public const int PageSize = 4096;

    /// <summary>
    /// The version register: version 0x14 (an integrated APIC), max LVT entry 5 (six LVT entries,
    /// no CMCI), no EOI-broadcast suppression (SDM Vol. 3A §11.4.8, Figure 11-7). Xen's vlapic reports the same.
    /// </summary>
    public const uint VersionValue = 0x0005_0014;

    private const uint SvrSoftwareEnable = 1u << 8;
    private const uint LvtMask = 1u << 16;
    private const int LvtTimer = 0, LvtThermal = 1, LvtPerformance = 2, LvtLint0 = 3, LvtLint1 = 4, LvtError = 5;

    // ESR bits (SDM Vol. 3A §11.5.3, Figure 11-9).
    private const uint EsrSendIllegalVector = 1u << 5, EsrReceiveIllegalVector = 1u << 6, EsrIllegalRegisterAddress = 1u << 7;

    private readonly object _lock = new();
    private readonly IGuestClock _clock;
    private readonly uint[] _irr = new uint[8], _isr = new uint[8], _tmr = new uint[8];
    private readonly uint[] _lvt = new uint[6];
    private ulong _apicBase;
    private uint _xapicId, _tpr, _svr, _ldr, _dfr, _esr, _esrPending, _icrHigh, _icrLow;
    private uint _initialCount, _divideConfig;
    private bool _nmiPending;

    /// <summary>Creates the APIC of the vCPU whose initial APIC ID is <paramref name="apicId"/>, in its reset state (xAPIC mode, software-disabled).</summary>
    /// <param name="apicId">The initial APIC ID (CPUID.1:EBX[31:24]; the full 32-bit x2APIC ID, CPUID.0BH:EDX).</param>
    /// <param name="isBootstrapProcessor">Sets IA32_APIC_BASE.BSP.</param>
    /// <param name="clock">The guest TSC the timer counts.</param>
    public LocalApic(uint apicId, bool isBootstrapProcessor, IGuestClock clock)
    {
        ArgumentNullException.ThrowIfNull(clock);
        _clock = clock;
        ApicId = apicId;
        _apicBase = DefaultBaseAddress | ApicBaseEnable | (isBootstrapProcessor ? ApicBaseBsp : 0);
        _xapicId = apicId << 24;
        ResetRegisters();
    }

    /// <summary>The initial (x2APIC) APIC ID this APIC was created with.</summary>
    public uint ApicId { get; }

    /// <summary>Receives notifications (interrupt pending, INIT, SIPI, level-triggered EOI); null for none.</summary>
    public ILocalApicHost? Host { get; set; }

    /// <summary>Where IPIs go; null delivers only self-directed ones (SELF IPI, the "self" shorthand).</summary>
    public IApicIpiSink? IpiSink { get; set; }

    /// <summary>IA32_APIC_BASE's width limit: bits from this one up are reserved (set from CPUID.80000008H:EAX[7:0]; default 52).</summary>
    public int PhysicalAddressBits { get; set; } = 52;

    /// <summary>The current mode from IA32_APIC_BASE.</summary>
    public ApicMode Mode
    {
        get { lock (_lock) return ModeLocked; }
    }

    /// <summary>The guest-physical base of the xAPIC register page (IA32_APIC_BASE bits MAXPHYADDR-1:12).</summary>
    public ulong BaseAddress
    {
        get { lock (_lock) return _apicBase & ApicBaseAddressMask; }
    }

    /// <summary>True when the APIC is enabled in IA32_APIC_BASE and by SVR bit 8 (SDM Vol. 3A §11.4.7.2).</summary>
    public bool IsSoftwareEnabled
    {
        get { lock (_lock) return IsEnabledLocked; }
    }

    /// <summary>The task-priority register, bits 7:0 (what MOV CR8 writes as TPR[7:4], SDM Vol. 3A §11.8.6).</summary>
    public byte Tpr
    {
        get { lock (_lock) return (byte)_tpr; }
        set { lock (_lock) _tpr = value; }
    }

    /// <summary>CR8 as the guest sees it in 64-bit mode: TPR bits 7:4 (SDM Vol. 3A §11.8.6.1).</summary>
    public ulong Cr8
    {
        get => (ulong)(Tpr >> 4);
        set => Tpr = (byte)((value & 0xF) << 4);
    }

    /// <summary>The processor-priority register (SDM Vol. 3A §11.8.3.1).</summary>
    public byte ProcessorPriority
    {
        get { lock (_lock) return (byte)PprLocked; }
    }

    private ApicMode ModeLocked => (_apicBase & ApicBaseEnable) == 0 ? ApicMode.Disabled
        : (_apicBase & ApicBaseExtd) != 0 ? ApicMode.X2Apic : ApicMode.XApic;

    private bool IsEnabledLocked => ModeLocked != ApicMode.Disabled && (_svr & SvrSoftwareEnable) != 0;

    // PPR: TPR when TPR[7:4] >= ISRV[7:4], else ISRV[7:4]:0 (SDM Vol. 3A §11.8.3.1).
    private uint PprLocked
    {
        get
        {
            int isrv = Highest(_isr);
            uint isrClass = isrv < 0 ? 0 : (uint)isrv & 0xF0;
            return (_tpr & 0xF0) >= isrClass ? _tpr & 0xFF : isrClass;
        }
    }

    /// <summary>
    /// True when an interrupt can be delivered to the processor: the APIC is enabled and the highest
    /// IRR vector's priority class is above the PPR's (SDM Vol. 3A §11.8.4). Processes a timer expiry first.
    /// </summary>
    public bool HasPendingInterrupt => GetHighestPendingVector() >= 0;

    /// <summary>The vector <see cref="AcknowledgeInterrupt"/> would accept now, or -1 when none is deliverable. Processes a timer expiry first.</summary>
    /// <returns>The highest deliverable IRR vector, or -1.</returns>
    public int GetHighestPendingVector()
    {
        AdvanceTime();
        lock (_lock)
            return DeliverableLocked();
    }

    /// <summary>
    /// The processor's interrupt acknowledge (SDM Vol. 3A §11.8.4): moves the highest deliverable vector
    /// from IRR to ISR and returns it, for the VMM to inject as an external interrupt. When nothing is
    /// deliverable (the TPR rose, or the IRR emptied) it returns the spurious vector from SVR[7:0] and
    /// changes nothing (SDM Vol. 3A §11.9).
    /// </summary>
    /// <returns>The vector to inject.</returns>
    public byte AcknowledgeInterrupt()
    {
        AdvanceTime();
        lock (_lock)
        {
            int v = DeliverableLocked();
            if (v < 0)
                return (byte)_svr;
            Clear(_irr, v);
            Set(_isr, v);
            return (byte)v;
        }
    }

    /// <summary>True while an NMI (ICR or LVT delivery mode NMI) waits to be injected.</summary>
    public bool HasPendingNmi
    {
        get { lock (_lock) return _nmiPending; }
    }

    /// <summary>Takes the pending NMI for injection.</summary>
    /// <returns>True when one was pending.</returns>
    public bool AcknowledgeNmi()
    {
        lock (_lock)
        {
            bool was = _nmiPending;
            _nmiPending = false;
            return was;
        }
    }

    /// <summary>
    /// A fixed interrupt arrives from an I/O APIC, an MSI or another APIC (any thread). It is
    /// accepted into the IRR (and TMR for a level-triggered one) when the APIC is enabled; a vector
    /// below 16 is refused with ESR "receive illegal vector" (SDM Vol. 3A §11.5.2, §11.5.3).
    /// </summary>
    /// <param name="vector">The vector.</param>
    /// <param name="levelTriggered">The trigger mode (TMR).</param>
    /// <returns>True when the vector entered the IRR.</returns>
    public bool RequestInterrupt(byte vector, bool levelTriggered = false)
    {
        bool accepted, pending;
        lock (_lock)
            accepted = AcceptLocked(vector, levelTriggered, out pending);
        if (pending)
            Host?.InterruptPending(this);
        return accepted;
    }

    /// <summary>An NMI arrives (any thread); it is held until <see cref="AcknowledgeNmi"/>. Accepted even when software-disabled (SDM Vol. 3A §11.4.7.2).</summary>
    public void RequestNmi()
    {
        lock (_lock)
        {
            if (ModeLocked == ApicMode.Disabled)
                return;
            _nmiPending = true;
        }

        Host?.InterruptPending(this);
    }

    /// <summary>An INIT arrives (any thread): the APIC does its INIT reset, keeping its ID and IA32_APIC_BASE (SDM Vol. 3A §11.4.7.3), and tells the host.</summary>
    public void RequestInit()
    {
        lock (_lock)
        {
            if (ModeLocked == ApicMode.Disabled)
                return;
            ResetRegisters();
        }

        Host?.InitReceived(this);
    }

    /// <summary>A start-up IPI arrives (any thread); the host starts the vCPU if it waits for one.</summary>
    /// <param name="vector">The start-up vector.</param>
    public void RequestStartup(byte vector)
    {
        lock (_lock)
        {
            if (ModeLocked == ApicMode.Disabled)
                return;
        }

        Host?.StartupReceived(this, vector);
    }

    /// <summary>
    /// The LINT0 or LINT1 pin is asserted (by a virtual 8259 or the platform's NMI source): the
    /// entry's delivery mode decides (fixed: its vector; NMI: an NMI); a masked entry, a disabled APIC
    /// and the other delivery modes (ExtINT is answered by the 8259, not the APIC) deliver nothing.
    /// </summary>
    /// <param name="pin">0 for LINT0, 1 for LINT1.</param>
    /// <returns>True when an interrupt or NMI became pending.</returns>
    public bool SignalLocalInterrupt(int pin)
    {
        if (pin is not (0 or 1))
            throw new ArgumentOutOfRangeException(nameof(pin), pin, "LINT0 or LINT1");
        bool pending;
        lock (_lock)
        {
            uint lvt = _lvt[pin == 0 ? LvtLint0 : LvtLint1];
            var mode = (ApicDeliveryMode)((lvt >> 8) & 7);
            pending = false;
            if (IsEnabledLocked && (lvt & LvtMask) == 0)
            {
                if (mode == ApicDeliveryMode.Fixed)
                    AcceptLocked((byte)lvt, (lvt & (1u << 15)) != 0, out pending);
                else if (mode == ApicDeliveryMode.Nmi)
                    pending = _nmiPending = true;
            }
        }

        if (pending)
            Host?.InterruptPending(this);
        return pending;
    }

    /// <summary>True when this APIC is a target of <paramref name="command"/>'s destination field (SDM Vol. 3A §11.6.2; x2APIC §11.12.10).</summary>
    /// <param name="command">The command (its shorthand is not considered here).</param>
    /// <returns>True on a physical-ID, broadcast or logical match.</returns>
    public bool MatchesDestination(in ApicInterruptCommand command)
    {
        lock (_lock)
        {
            var mode = ModeLocked;
            if (mode == ApicMode.Disabled)
                return false;
            uint dest = command.Destination;
            if (dest == command.Broadcast)
                return true;
            if (!command.LogicalDestination)
                return dest == (mode == ApicMode.X2Apic ? ApicId : _xapicId >> 24);
            if (mode == ApicMode.X2Apic)
            {
                // Logical x2APIC: bits 31:16 cluster, 15:0 member bitmap (SDM Vol. 3A §11.12.10.2).
                return (dest >> 16) == (_ldr >> 16) && (dest & _ldr & 0xFFFF) != 0;
            }

            // Flat (DFR[31:28] = 1111b) or cluster (0000b); the reserved models match nothing (Xen 4.17's
            // vlapic_match_logical_addr).
            uint logical = _ldr >> 24;
            return (_dfr >> 28) switch
            {
                0xF => (logical & dest) != 0,
                0x0 => (logical >> 4) == (dest >> 4) && (logical & dest & 0xF) != 0,
                _ => false,
            };
        }
    }

    private int DeliverableLocked()
    {
        if (!IsEnabledLocked)
            return -1;
        int irrv = Highest(_irr);
        return irrv >= 0 && (uint)(irrv & 0xF0) > (PprLocked & 0xF0) ? irrv : -1;
    }

    // Returns true when the vector entered the IRR; pending is true when anything became pending (the vector or an error interrupt).
    private bool AcceptLocked(byte vector, bool levelTriggered, out bool pending)
    {
        pending = false;
        if (!IsEnabledLocked)
            return false;                                // Xen's vlapic_accept_irq: a disabled APIC drops fixed interrupts
        if (vector < 16)
        {
            pending = SignalErrorLocked(EsrReceiveIllegalVector);
            return false;
        }

        Set(_irr, vector);
        if (levelTriggered)
            Set(_tmr, vector);
        else
            Clear(_tmr, vector);
        pending = true;
        return true;
    }

    // An error sets its ESR bit and, when the bit is new, delivers the LVT error interrupt (SDM Vol. 3A §11.5.3).
    // Returns true when the error interrupt became pending.
    private bool SignalErrorLocked(uint bit)
    {
        bool isNew = (_esrPending & bit) == 0;
        _esrPending |= bit;
        uint lvt = _lvt[LvtError];
        if (!isNew || (lvt & LvtMask) != 0 || !IsEnabledLocked)
            return false;
        if ((byte)lvt < 16)
        {
            // An illegal error vector is not delivered (no error loop): it is a locally generated illegal vector, so
            // "receive illegal vector" is set instead (SDM Vol. 3A §11.5.3; XSA-462, Xen's vlapic_error).
            _esrPending |= EsrReceiveIllegalVector;
            return false;
        }

        Set(_irr, (byte)lvt);
        Clear(_tmr, (byte)lvt);
        return true;
    }

    // Power-up / INIT state of everything but the ID and IA32_APIC_BASE (SDM Vol. 3A §11.4.7.1, §11.4.7.3).
    private void ResetRegisters()
    {
        Array.Clear(_irr);
        Array.Clear(_isr);
        Array.Clear(_tmr);
        for (int i = 0; i < _lvt.Length; i++)
            _lvt[i] = LvtMask;
        _tpr = 0;
        _svr = 0xFF;
        _ldr = ModeLocked == ApicMode.X2Apic ? X2ApicLogicalId(ApicId) : 0;
        _dfr = 0xFFFF_FFFF;
        _esr = _esrPending = 0;
        _icrHigh = _icrLow = 0;
        _initialCount = 0;
        _divideConfig = 0;
        _nmiPending = false;
        StopTimerLocked();
    }

    // x2APIC logical ID: cluster = ID[19:4] in bits 31:16, member bit 1 << ID[3:0] (SDM Vol. 3A §11.12.10.2).
    private static uint X2ApicLogicalId(uint id) => ((id >> 4) << 16) | (1u << (int)(id & 0xF));

    private static int Highest(uint[] bits)
    {
        for (int i = 7; i >= 0; i--)
        {
            if (bits[i] != 0)
                return (i * 32) + 31 - BitOperations.LeadingZeroCount(bits[i]);
        }

        return -1;
    }

    private static void Set(uint[] bits, int vector) => bits[vector >> 5] |= 1u << (vector & 31);

    private static void Clear(uint[] bits, int vector) => bits[vector >> 5] &= ~(1u << (vector & 31));

    private static bool IsSet(uint[] bits, int vector) => (bits[vector >> 5] & (1u << (vector & 31))) != 0;
}
