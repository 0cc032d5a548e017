using System.Buffers.Binary;

namespace VmmKit.Devices;

// Saving and restoring the register file as an image of the xAPIC page, for a VMM's save/restore (Xen's
// hvm_hw_lapic_regs is the first 1 KiB of that page, xen/include/public/arch-x86/hvm/save.h).
public sealed partial class LocalApic
{
    /// <summary>Bytes of <see cref="SaveRegisterPage"/>'s image: register slots 0x000 to 0x3F0 of the xAPIC page.</summary>
    public const int RegisterPageImageSize = 1024;

    /// <summary>
    /// Writes the register file as the xAPIC page lays it out (SDM Vol. 3A §11.4.1, Table 11-1): each 32-bit
    /// register at offset index × 16 of a <see cref="RegisterPageImageSize"/>-byte image, the rest of each slot 0.
    /// The ID slot holds the x2APIC ID in x2APIC mode; the current-count slot the count now; the initial-count slot
    /// the count written, also in timer mode 11b where the guest reads 0. Write-only and reserved slots are 0.
    /// </summary>
    /// <param name="image">At least <see cref="RegisterPageImageSize"/> bytes.</param>
    public void SaveRegisterPage(Span<byte> image)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(image.Length, RegisterPageImageSize);
        image[..RegisterPageImageSize].Clear();
        AdvanceTime();
        lock (_lock)
        {
            bool x2 = ModeLocked == ApicMode.X2Apic;
            for (int index = 0; index < RegisterPageImageSize / 16; index++)
            {
                ulong value;
                if (index == RegIcrLow)
                    value = _icrLow;
                else if (index == RegIcrHigh)
                    value = _icrHigh;
                else if (index == RegInitialCount)
                    value = _initialCount;                // kept in mode 11b, where the guest reads 0 (Xen's lapic_save_regs)
                else if (!TryReadRegisterLocked(index, x2 && index == RegId, out value))
                    continue;
                BinaryPrimitives.WriteUInt32LittleEndian(image[(index * 16)..], (uint)value);
            }
        }
    }

    private static uint Slot(ReadOnlySpan<byte> image, int index) => BinaryPrimitives.ReadUInt32LittleEndian(image[(index * 16)..]);

    /// <summary>
    /// Loads a register file saved by <see cref="SaveRegisterPage"/> (or Xen's <c>lapic_load_regs</c> image): TPR, LDR,
    /// DFR, SVR, ISR, TMR, IRR, ESR, ICR, the LVT, the timer's initial count and divide configuration, and in xAPIC
    /// mode the ID. Read-only bits take the values the registers allow (an LVT entry keeps only its writable bits and
    /// delivery status; a software-disabled APIC masks the LVT; vectors 0-15 are dropped from ISR, TMR and IRR). The
    /// timer restarts from its initial count at the current time (Xen's <c>lapic_rearm</c>); in TSC-deadline mode the
    /// deadline in force is kept. The mode and base (IA32_APIC_BASE) are not part of the image: load them first with
    /// <see cref="WriteMsr"/>.
    /// </summary>
    /// <param name="image">At least <see cref="RegisterPageImageSize"/> bytes.</param>
    public void LoadRegisterPage(ReadOnlySpan<byte> image)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(image.Length, RegisterPageImageSize);
        bool pending;
        lock (_lock)
        {
            var mode = ModeLocked;
            if (mode == ApicMode.XApic)
                _xapicId = Slot(image, RegId) & 0xFF00_0000;
            _tpr = Slot(image, RegTpr) & 0xFF;
            _ldr = mode == ApicMode.X2Apic ? X2ApicLogicalId(ApicId) : Slot(image, RegLdr) & 0xFF00_0000;
            _dfr = Slot(image, RegDfr) | 0x0FFF_FFFF;
            _svr = Slot(image, RegSvr) & 0x3FF;
            for (int i = 0; i < 8; i++)
            {
                _isr[i] = Slot(image, RegIsr + i);
                _tmr[i] = Slot(image, RegTmr + i);
                _irr[i] = Slot(image, RegIrr + i);
            }

            // Vectors 0-15 never enter these registers (SDM Vol. 3A §11.5.2; Xen 4.17's vlapic_set_irq refuses them, though
            // its lapic_load_regs takes the page unchecked): an image holding them would offer an exception vector.
            _isr[0] &= 0xFFFF_0000;
            _tmr[0] &= 0xFFFF_0000;
            _irr[0] &= 0xFFFF_0000;

            _esr = Slot(image, RegEsr) & 0xFF;
            _esrPending = 0;
            _icrLow = Slot(image, RegIcrLow) & 0x000C_CFFF;
            _icrHigh = Slot(image, RegIcrHigh) & (mode == ApicMode.X2Apic ? ~0u : 0xFF00_0000);
            bool softwareEnabled = (_svr & SvrSoftwareEnable) != 0;
            for (int i = 0; i < _lvt.Length; i++)
                _lvt[i] = (Slot(image, RegLvtTimer + i) & (LvtWritable[i] | (1u << 12))) | (softwareEnabled ? 0 : LvtMask);
            _divideConfig = Slot(image, RegDivideConfig) & 0xB;
            _initialCount = Slot(image, RegInitialCount);
            ulong deadline = _tscDeadline;
            StopTimerLocked();
            if (TimerModeLocked == LocalApicTimerMode.TscDeadline)
            {
                _initialCount = 0;
                _tscDeadline = deadline;
            }
            else if (_initialCount != 0 && CountsLocked)
            {
                _timerArmed = true;
                _timerStart = _clock.Tsc;
                _timerStartCount = _initialCount;
            }

            pending = DeliverableLocked() >= 0;
        }

        if (pending)
            Host?.InterruptPending(this);
    }
}
