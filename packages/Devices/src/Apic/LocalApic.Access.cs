namespace VmmKit.Devices;

// The two ways a guest reaches the registers: the xAPIC MMIO page and the MSRs (SDM Vol. 3A §11.4.1, §11.12.1).
public sealed partial class LocalApic
{
    /// <summary>IA32_APIC_BASE (SDM Vol. 3A §11.4.4, Figure 11-5).</summary>
    public const uint ApicBaseMsr = 0x1B;

    /// <summary>The first x2APIC register MSR.</summary>
    public const uint X2ApicMsrFirst = 0x800;

    /// <summary>The last MSR of the x2APIC range.</summary>
    public const uint X2ApicMsrLast = 0x8FF;

    /// <summary>IA32_APIC_BASE bit 8: this is the bootstrap processor (read-only here).</summary>
    public const ulong ApicBaseBsp = 1ul << 8;

    /// <summary>IA32_APIC_BASE bit 10 (EXTD): x2APIC mode.</summary>
    public const ulong ApicBaseExtd = 1ul << 10;

    /// <summary>IA32_APIC_BASE bit 11 (EN): the APIC is globally enabled.</summary>
    public const ulong ApicBaseEnable = 1ul << 11;

    private ulong ApicBaseAddressMask => ((1ul << PhysicalAddressBits) - 1) & ~0xFFFul;

    /// <summary>
    /// RDMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register. x2APIC registers fault unless
    /// the APIC is in x2APIC mode, and so do reserved and write-only ones (EOI, SELF IPI) (SDM Vol. 3A §11.12.1.2).
    /// </summary>
    /// <param name="msr">ECX.</param>
    /// <param name="value">EDX:EAX on <see cref="ApicAccessResult.Ok"/>.</param>
    /// <returns>Ok, GeneralProtection, or NotApicMsr for an MSR outside the APIC's.</returns>
    public ApicAccessResult ReadMsr(uint msr, out ulong value)
    {
        value = 0;
        if (msr == ApicBaseMsr)
        {
            lock (_lock)
                value = _apicBase;
            return ApicAccessResult.Ok;
        }

        if (msr == TscDeadlineMsr)
        {
            lock (_lock)
                value = ReadTscDeadlineLocked();
            return ApicAccessResult.Ok;
        }

        if (msr is < X2ApicMsrFirst or > X2ApicMsrLast)
            return ApicAccessResult.NotApicMsr;
        AdvanceTime();
        lock (_lock)
        {
            if (ModeLocked != ApicMode.X2Apic)
                return ApicAccessResult.GeneralProtection;
            return TryReadRegisterLocked((int)(msr - X2ApicMsrFirst), true, out value) ? ApicAccessResult.Ok : ApicAccessResult.GeneralProtection;
        }
    }

    /// <summary>
    /// WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register. Faults on x2APIC registers
    /// outside x2APIC mode, on read-only and reserved registers, on reserved bits, and on the invalid
    /// IA32_APIC_BASE mode transitions (SDM Vol. 3A §11.12.1.3, §11.12.5 Figure 11-27).
    /// </summary>
    /// <param name="msr">ECX.</param>
    /// <param name="value">EDX:EAX.</param>
    /// <returns>Ok, GeneralProtection, or NotApicMsr for an MSR outside the APIC's.</returns>
    public ApicAccessResult WriteMsr(uint msr, ulong value)
    {
        if (msr == ApicBaseMsr)
            return WriteApicBase(value);
        if (msr == TscDeadlineMsr)
        {
            lock (_lock)
                WriteTscDeadlineLocked(value);
            AdvanceTime();                                // a deadline already passed fires at once
            return ApicAccessResult.Ok;
        }

        if (msr is < X2ApicMsrFirst or > X2ApicMsrLast)
            return ApicAccessResult.NotApicMsr;
        AdvanceTime();
        WriteEffects effects;
        lock (_lock)
        {
            if (ModeLocked != ApicMode.X2Apic || !TryWriteRegisterLocked((int)(msr - X2ApicMsrFirst), value, true, out effects))
                return ApicAccessResult.GeneralProtection;
        }

        Complete(in effects);
        return ApicAccessResult.Ok;
    }

    private ApicAccessResult WriteApicBase(ulong value)
    {
        lock (_lock)
        {
            ulong reserved = ~(ApicBaseAddressMask | ApicBaseEnable | ApicBaseExtd | ApicBaseBsp);
            if ((value & reserved) != 0)
                return ApicAccessResult.GeneralProtection;
            var from = ModeLocked;
            bool en = (value & ApicBaseEnable) != 0, extd = (value & ApicBaseExtd) != 0;
            var to = !en ? ApicMode.Disabled : extd ? ApicMode.X2Apic : ApicMode.XApic;
            // Invalid: EXTD without EN; x2APIC -> xAPIC; disabled -> x2APIC (SDM Vol. 3A §11.12.5, Figure 11-27).
            if ((extd && !en) || (from == ApicMode.X2Apic && to == ApicMode.XApic) || (from == ApicMode.Disabled && to == ApicMode.X2Apic))
                return ApicAccessResult.GeneralProtection;

            // The xAPIC window stays at 0xFEE00000: one page per domain cannot follow a per-vCPU base (Xen 4.17's
            // guest_wrmsr_apic_base); in x2APIC mode and disabled the address bits are not checked.
            if (to == ApicMode.XApic && (value & ApicBaseAddressMask) != DefaultBaseAddress)
                return ApicAccessResult.GeneralProtection;
            _apicBase = (value & ~ApicBaseBsp) | (_apicBase & ApicBaseBsp);
            if (to == ApicMode.Disabled && from != ApicMode.Disabled)
            {
                // A disabled APIC comes back in its power-up state, initial ID included (SDM Vol. 3A §11.4.3; Xen 4.17's
                // guest_wrmsr_apic_base calls vlapic_reset when EN is set again).
                ResetRegisters();
                _xapicId = ApicId << 24;
            }
            else if (to == ApicMode.X2Apic && from == ApicMode.XApic)
                _ldr = X2ApicLogicalId(ApicId);           // x2APIC: LDR is derived from the ID and read-only (§11.12.10.2)
            return ApicAccessResult.Ok;
        }
    }

    /// <summary>
    /// A guest read of the xAPIC page (register the APIC at <see cref="BaseAddress"/>, or forward the
    /// vCPU's own APIC-page accesses here: every vCPU sees its own APIC at the same address).
    /// Registers are 32 bits on 16-byte boundaries; an access that fits in a register's 32 bits reads
    /// its bytes, any other reads 0 (Xen 4.17's <c>vlapic_mmio_read</c>). Outside xAPIC mode the page
    /// reads as zeros. A reserved register reads 0 and sets ESR "illegal register address". Bytes past
    /// the page's end belong to the next page and are left as they are: the caller splits an access
    /// crossing the page end (as Xen's <c>hvmemul_linear_mmio_access</c> does) and fills them.
    /// </summary>
    /// <param name="baseAddress">The page's base.</param>
    /// <param name="offset">Offset in the page.</param>
    /// <param name="data">Receives the bytes.</param>
    public void Read(ulong baseAddress, ulong offset, Span<byte> data)
    {
        if (offset >= PageSize)
            return;
        data = data[..(int)Math.Min((ulong)data.Length, PageSize - offset)];
        data.Clear();
        int at = (int)(offset & 0xF);
        if (data.Length == 0 || at + data.Length > 4)
            return;
        AdvanceTime();
        bool pending = false;
        lock (_lock)
        {
            if (ModeLocked != ApicMode.XApic)
                return;
            if (!TryReadRegisterLocked((int)(offset >> 4), false, out ulong value))
            {
                pending = SignalErrorLocked(EsrIllegalRegisterAddress);
            }
            else
            {
                for (int i = 0; i < data.Length; i++)
                    data[i] = (byte)(value >> (8 * (at + i)));
            }
        }

        if (pending)
            Host?.InterruptPending(this);
    }

    /// <summary>
    /// A guest write to the xAPIC page: a write that fits in a register's 32 bits reaches it, a 1- or
    /// 2-byte one merged into the register's current value; any other is dropped (Xen 4.17's
    /// <c>vlapic_mmio_write</c>). Writes to read-only registers are ignored and reserved ones set ESR
    /// "illegal register address". Outside xAPIC mode the write is dropped. Bytes past the page's end
    /// are not the APIC's (see <see cref="Read"/>).
    /// </summary>
    /// <param name="baseAddress">The page's base.</param>
    /// <param name="offset">Offset in the page.</param>
    /// <param name="data">The bytes written.</param>
    public void Write(ulong baseAddress, ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset >= PageSize)
            return;
        data = data[..(int)Math.Min((ulong)data.Length, PageSize - offset)];
        int at = (int)(offset & 0xF);
        if (data.Length == 0 || at + data.Length > 4)
            return;
        AdvanceTime();
        WriteEffects effects;
        lock (_lock)
        {
            if (ModeLocked != ApicMode.XApic)
                return;
            int index = (int)(offset >> 4);
            if (!TryReadRegisterLocked(index, false, out ulong current))
            {
                effects = new WriteEffects(null, -1, SignalErrorLocked(EsrIllegalRegisterAddress));
            }
            else
            {
                uint value = (uint)current;
                for (int i = 0; i < data.Length; i++)
                    value = (value & ~(0xFFu << (8 * (at + i)))) | ((uint)data[i] << (8 * (at + i)));
                TryWriteRegisterLocked(index, value, false, out effects);
            }
        }

        Complete(in effects);
    }
}
