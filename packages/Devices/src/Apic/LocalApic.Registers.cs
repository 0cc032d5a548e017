namespace VmmKit.Devices;

// The register file shared by the xAPIC page and the x2APIC MSRs. A register's index is its xAPIC offset >> 4,
// which is also its x2APIC MSR number minus 0x800 (SDM Vol. 3A §11.12.1.2, Table 11-6).
public sealed partial class LocalApic
{
    private const int RegId = 0x02, RegVersion = 0x03, RegTpr = 0x08, RegApr = 0x09, RegPpr = 0x0A, RegEoi = 0x0B,
        RegRrd = 0x0C, RegLdr = 0x0D, RegDfr = 0x0E, RegSvr = 0x0F, RegIsr = 0x10, RegTmr = 0x18, RegIrr = 0x20,
        RegEsr = 0x28, RegIcrLow = 0x30, RegIcrHigh = 0x31, RegLvtTimer = 0x32, RegLvtError = 0x37,
        RegInitialCount = 0x38, RegCurrentCount = 0x39, RegDivideConfig = 0x3E, RegSelfIpi = 0x3F;

    // Writable bits of each LVT entry, timer to error (SDM Vol. 3A §11.5.1, Figure 11-8): delivery status and remote IRR are read-only.
    private static readonly uint[] LvtWritable = [0x700FF, 0x107FF, 0x107FF, 0x1A7FF, 0x1A7FF, 0x100FF];

    // Bits an x2APIC LVT write may set without #GP: the writable ones plus delivery status (bit 12) and, for LINT0/1,
    // remote IRR (bit 14), which are then ignored (Xen 4.17's guest_wrmsr_x2apic, vlapic_lvt_mask).
    private static readonly uint[] X2LvtAccepted = [0x710FF, 0x117FF, 0x117FF, 0x1F7FF, 0x1F7FF, 0x110FF];

    // x2APIC ICR: bits 12 (delivery status), 13, 17:16 and 31:20 are reserved (SDM Vol. 3A §11.12.9).
    private const ulong X2IcrWritable = 0xFFFF_FFFF_000C_CFFFul;

    private readonly record struct WriteEffects(ApicInterruptCommand? Ipi, int LevelEoiVector, bool Pending);

    /// <summary>Reads register <paramref name="index"/>; false for a reserved or write-only register.</summary>
    private bool TryReadRegisterLocked(int index, bool x2, out ulong value)
    {
        value = 0;
        switch (index)
        {
            case RegId: value = x2 ? ApicId : _xapicId; return true;
            case RegVersion: value = VersionValue; return true;
            case RegTpr: value = _tpr; return true;
            case RegApr when !x2: return true;            // APR is the P6 family's: reads 0 (Xen 4.17's vlapic_read_aligned)
            case RegPpr: value = PprLocked; return true;
            case RegEoi: return !x2;                      // write-only in x2APIC mode; reads 0 in xAPIC mode
            case RegRrd when !x2: return true;            // remote read is obsolete: reads 0
            case RegLdr: value = _ldr; return true;
            case RegDfr when !x2: value = _dfr; return true;
            case RegSvr: value = _svr; return true;
            case >= RegIsr and < RegIsr + 8: value = _isr[index - RegIsr]; return true;
            case >= RegTmr and < RegTmr + 8: value = _tmr[index - RegTmr]; return true;
            case >= RegIrr and < RegIrr + 8: value = _irr[index - RegIrr]; return true;
            case RegEsr: value = _esr; return true;
            case RegIcrLow: value = x2 ? ((ulong)_icrHigh << 32) | _icrLow : _icrLow; return true;
            case RegIcrHigh when !x2: value = _icrHigh; return true;
            case >= RegLvtTimer and <= RegLvtError: value = _lvt[index - RegLvtTimer]; return true;
            case RegInitialCount: value = CountsLocked ? _initialCount : 0; return true;   // Xen 4.17's vlapic_read_aligned
            case RegCurrentCount: value = CurrentCountLocked(); return true;
            case RegDivideConfig: value = _divideConfig; return true;
            default: return false;                        // reserved, and SELF IPI (write-only)
        }
    }

    /// <summary>Writes register <paramref name="index"/>; false when an x2APIC write must #GP (read-only, reserved, reserved bits set).</summary>
    private bool TryWriteRegisterLocked(int index, ulong value, bool x2, out WriteEffects effects)
    {
        effects = new WriteEffects(null, -1, false);
        uint v = (uint)value;
        if (x2 && index != RegIcrLow && (value >> 32) != 0)
            return false;
        switch (index)
        {
            case RegId when !x2:
                _xapicId = v & 0xFF00_0000;
                return true;
            case RegTpr:
                if (x2 && v > 0xFF)
                    return false;
                _tpr = v & 0xFF;
                return true;
            case RegEoi:
                if (x2 && v != 0)
                    return false;                         // x2APIC: a non-zero EOI write faults (SDM Vol. 3A §11.12.1.2)
                effects = effects with { LevelEoiVector = EndOfInterruptLocked() };
                return true;
            case RegLdr when !x2:
                _ldr = v & 0xFF00_0000;
                return true;
            case RegDfr when !x2:
                _dfr = v | 0x0FFF_FFFF;                   // bits 27:0 read as ones
                return true;
            case RegSvr:
                if (x2 && (v & ~0x3FFu) != 0)
                    return false;
                _svr = v & 0x3FF;
                if ((_svr & SvrSoftwareEnable) == 0)
                {
                    for (int i = 0; i < _lvt.Length; i++)
                        _lvt[i] |= LvtMask;               // software disable masks every LVT entry (SDM Vol. 3A §11.4.7.2)
                }

                return true;
            case RegEsr:
                if (x2 && v != 0)
                    return false;
                _esr = _esrPending;                       // a write latches the errors since the last write (SDM Vol. 3A §11.5.3)
                _esrPending = 0;
                return true;
            case RegIcrLow:
                if (x2)
                {
                    if ((value & ~X2IcrWritable) != 0)
                        return false;
                    _icrHigh = (uint)(value >> 32);
                    _icrLow = v;
                }
                else
                {
                    _icrLow = v & 0x000C_CFFF;            // delivery status reads 0: delivery is immediate
                }

                effects = effects with { Ipi = ApicInterruptCommand.FromIcr(((ulong)_icrHigh << 32) | _icrLow, x2) };
                return true;
            case RegIcrHigh when !x2:
                _icrHigh = v & 0xFF00_0000;
                return true;
            case >= RegLvtTimer and <= RegLvtError:
            {
                int entry = index - RegLvtTimer;
                if (x2 && (v & ~X2LvtAccepted[entry]) != 0)
                    return false;
                uint next = (v & LvtWritable[entry]) | (_lvt[entry] & ~LvtWritable[entry]);
                if ((_svr & SvrSoftwareEnable) == 0)
                    next |= LvtMask;
                if (entry == LvtTimer)
                    WriteLvtTimerLocked(next);
                else
                    _lvt[entry] = next;
                return true;
            }

            case RegInitialCount:
                WriteInitialCountLocked(v);
                return true;
            case RegDivideConfig:
                if (x2 && (v & ~0xBu) != 0)
                    return false;
                WriteDivideConfigLocked(v & 0xB);
                return true;
            case RegSelfIpi when x2:
                if (v > 0xFF)
                    return false;
                effects = effects with
                {
                    Ipi = new ApicInterruptCommand((byte)v, ApicDeliveryMode.Fixed, false, true, false, ApicDestinationShorthand.Self, 0, true),
                };
                return true;
            default:
                return !x2;                               // read-only or reserved: xAPIC ignores the write, x2APIC faults
        }
    }

    // EOI: the highest ISR bit is cleared (SDM Vol. 3A §11.8.5); returns the vector when its TMR bit was set, else -1.
    private int EndOfInterruptLocked()
    {
        int v = Highest(_isr);
        if (v < 0)
            return -1;
        Clear(_isr, v);
        return IsSet(_tmr, v) ? v : -1;
    }

    // Applies what a register write asked for, outside the lock.
    private void Complete(in WriteEffects effects)
    {
        if (effects.LevelEoiVector >= 0)
            Host?.LevelTriggeredEoi(this, (byte)effects.LevelEoiVector);
        if (effects.Ipi is { } ipi)
            Send(in ipi);
        if (effects.Pending)
            Host?.InterruptPending(this);
    }

    private void Send(in ApicInterruptCommand icr)
    {
        if (icr.IsInitLevelDeassert)
            return;                                       // ignored by Pentium 4 and later (SDM Vol. 3A §11.6.1)

        // The trigger mode means nothing else: an IPI arrives edge-triggered (SDM Vol. 3A §11.6.1; Xen 4.17's
        // vlapic_accept_irq calls vlapic_set_irq with trig 0).
        var command = icr with { LevelTriggered = false };
        if (command.DeliveryMode is ApicDeliveryMode.Fixed or ApicDeliveryMode.LowestPriority && command.Vector < 16)
        {
            bool pending;
            lock (_lock)
                pending = SignalErrorLocked(EsrSendIllegalVector);
            if (pending)
                Host?.InterruptPending(this);
            return;
        }

        if (command.Shorthand == ApicDestinationShorthand.Self)
        {
            if (command.DeliveryMode == ApicDeliveryMode.Fixed)
                RequestInterrupt(command.Vector);
            return;                                       // "self" is valid with fixed delivery only
        }

        if (IpiSink is { } sink)
            sink.SendIpi(this, in command);
        else if (command.Shorthand == ApicDestinationShorthand.AllIncludingSelf
            || (command.Shorthand == ApicDestinationShorthand.None && MatchesDestination(in command)))
            Receive(in command);
    }

    /// <summary>
    /// Delivers an interrupt message addressed to this APIC by its delivery mode: fixed and lowest
    /// priority to the IRR, NMI, INIT and start-up to the host; SMI, ExtINT and the reserved modes
    /// deliver nothing. <see cref="ApicBus"/> calls it for every target.
    /// </summary>
    /// <param name="command">The message.</param>
    public void Receive(in ApicInterruptCommand command)
    {
        switch (command.DeliveryMode)
        {
            case ApicDeliveryMode.Fixed or ApicDeliveryMode.LowestPriority:
                RequestInterrupt(command.Vector, command.LevelTriggered);
                break;
            case ApicDeliveryMode.Nmi:
                RequestNmi();
                break;
            case ApicDeliveryMode.Init:
                RequestInit();
                break;
            case ApicDeliveryMode.StartUp:
                RequestStartup(command.Vector);
                break;
            default:
                break;
        }
    }
}
