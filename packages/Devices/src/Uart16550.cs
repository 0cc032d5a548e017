namespace VmmKit.Devices;

/// <summary>
/// A 16550A UART (National Semiconductor PC16550D data sheet; rust-vmm vm-superio's <c>Serial</c>
/// is the model): the register logic only. Transmitted bytes go to an <see cref="ISerialSink"/>
/// at once, so the transmitter is always empty (LSR.THRE and TEMT); received bytes come from the
/// host through <see cref="EnqueueInput"/> into the receive FIFO (16 bytes with FCR.0 set, one
/// holding register without); the interrupt output is an optional <see cref="IInterruptLine"/>.
/// Registers (offset from the base, DLAB = LCR bit 7): 0 RBR/THR (DLL with DLAB), 1 IER (DLM with
/// DLAB), 2 IIR/FCR, 3 LCR, 4 MCR, 5 LSR, 6 MSR, 7 SCR. A wider access is split into byte
/// accesses at consecutive offsets, as QEMU's serial does. Thread-safe: the host may enqueue input
/// while a vCPU accesses the registers.
/// </summary>
public sealed class Uart16550 : IBusDevice
{
    /// <summary>I/O base of COM1.</summary>
    public const ushort Com1Base = 0x3F8;

    /// <summary>Number of registers (ports) the UART decodes.</summary>
    public const int RegisterCount = 8;

    /// <summary>Receive FIFO depth with FIFOs enabled (PC16550D: 16 bytes).</summary>
    public const int FifoSize = 16;

    /// <summary>Divisor after reset: 12, 9600 baud from the PC's 1.8432 MHz clock (vm-superio's default).</summary>
    public const ushort DefaultDivisor = 12;

    // IER bits (PC16550D Table 2).
    private const byte IerReceivedData = 0x01, IerThrEmpty = 0x02, IerLineStatus = 0x04, IerModemStatus = 0x08;
    // IIR interrupt identification, highest priority first (PC16550D Table 4).
    private const byte IirNone = 0x01, IirLineStatus = 0x06, IirReceivedData = 0x04, IirThrEmpty = 0x02, IirModemStatus = 0x00;
    private const byte IirFifosEnabled = 0xC0;
    private const byte FcrEnable = 0x01, FcrClearReceive = 0x02;
    private const byte LcrDlab = 0x80;
    private const byte McrDtr = 0x01, McrRts = 0x02, McrOut1 = 0x04, McrOut2 = 0x08, McrLoopback = 0x10;
    private const byte LsrDataReady = 0x01, LsrOverrun = 0x02, LsrThrEmpty = 0x20, LsrTransmitterEmpty = 0x40;
    private const byte MsrCts = 0x10, MsrDsr = 0x20, MsrRi = 0x40, MsrDcd = 0x80;
    private const byte MsrDeltaCts = 0x01, MsrDeltaDsr = 0x02, MsrTrailingRi = 0x04, MsrDeltaDcd = 0x08;
    // Outside loopback the modem inputs are a terminal that is attached and ready (vm-superio's default).
    private const byte MsrTerminalAttached = MsrDcd | MsrDsr | MsrCts;

    private readonly object _lock = new();
    private readonly ISerialSink _sink;
    private readonly IInterruptLine? _interrupt;
    private readonly byte[] _fifo = new byte[FifoSize];
    private int _fifoHead, _fifoCount;
    private byte _ier, _lcr, _mcr, _lsrErrors, _msrDeltas, _fcr, _scratch;
    private ushort _divisor = DefaultDivisor;
    private bool _thrEmptyPending, _lineLevel;

    /// <summary>Creates a UART in its reset state.</summary>
    /// <param name="sink">Where transmitted bytes go.</param>
    /// <param name="interrupt">The interrupt output, or null when the UART is polled.</param>
    public Uart16550(ISerialSink sink, IInterruptLine? interrupt = null)
    {
        ArgumentNullException.ThrowIfNull(sink);
        _sink = sink;
        _interrupt = interrupt;
    }

    /// <summary>The range COM1 decodes: ports 0x3F8-0x3FF.</summary>
    public static BusRange Com1Range => new(Com1Base, RegisterCount);

    /// <summary>
    /// The baud-rate divisor latch (DLM:DLL), as the guest wrote it: 0 included (a guest may write any value), so a VMM
    /// that derives a rate from it divides by <c>Math.Max(1, Divisor)</c>.
    /// </summary>
    public ushort Divisor
    {
        get { lock (_lock) return _divisor; }
    }

    /// <summary>True while the interrupt output is asserted.</summary>
    public bool InterruptAsserted
    {
        get { lock (_lock) return _lineLevel; }
    }

    /// <summary>Free bytes in the receive FIFO (or holding register).</summary>
    public int InputSpace
    {
        get { lock (_lock) return Capacity - _fifoCount; }
    }

    private int Capacity => (_fcr & FcrEnable) != 0 ? FifoSize : 1;

    private bool Loopback => (_mcr & McrLoopback) != 0;

    /// <summary>
    /// Input from the host (a terminal): as many bytes as fit go into the receive FIFO, raising
    /// "received data available". Ignored in loopback mode, where the receiver is connected to the
    /// transmitter. The host keeps the rest and retries when the guest has read (flow control, as
    /// vm-superio does), so no byte is lost to an overrun.
    /// </summary>
    /// <param name="bytes">The bytes to deliver.</param>
    /// <returns>How many bytes were accepted.</returns>
    public int EnqueueInput(ReadOnlySpan<byte> bytes)
    {
        lock (_lock)
        {
            if (Loopback)
                return 0;
            int n = 0;
            while (n < bytes.Length && _fifoCount < Capacity)
                Push(bytes[n++]);
            UpdateInterrupt();
            return n;
        }
    }

    /// <inheritdoc/>
    public void Read(ulong baseAddress, ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
                data[i] = offset + (ulong)i < RegisterCount ? ReadRegister((int)offset + i) : (byte)0xFF;
            UpdateInterrupt();
        }
    }

    /// <inheritdoc/>
    public void Write(ulong baseAddress, ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                if (offset + (ulong)i < RegisterCount)
                    WriteRegister((int)offset + i, data[i]);
            }

            UpdateInterrupt();
        }
    }

    private byte ReadRegister(int register)
    {
        bool dlab = (_lcr & LcrDlab) != 0;
        switch (register)
        {
            case 0 when dlab: return (byte)_divisor;
            case 0: return Pop();
            case 1 when dlab: return (byte)(_divisor >> 8);
            case 1: return _ier;
            case 2:
            {
                byte id = InterruptIdentification();
                if (id == IirThrEmpty)
                    _thrEmptyPending = false;      // reading IIR clears a THRE interrupt it reports (Table 4)
                return (byte)(id | ((_fcr & FcrEnable) != 0 ? IirFifosEnabled : 0));
            }
            case 3: return _lcr;
            case 4: return _mcr;
            case 5:
            {
                byte lsr = (byte)(LsrThrEmpty | LsrTransmitterEmpty | _lsrErrors | (_fifoCount != 0 ? LsrDataReady : 0));
                _lsrErrors = 0;                    // reading LSR clears OE/PE/FE/BI
                return lsr;
            }
            case 6:
            {
                byte msr = (byte)(ModemInputs() | _msrDeltas);
                _msrDeltas = 0;                    // reading MSR clears the delta bits
                return msr;
            }
            default: return _scratch;
        }
    }

    private void WriteRegister(int register, byte value)
    {
        bool dlab = (_lcr & LcrDlab) != 0;
        switch (register)
        {
            case 0 when dlab: _divisor = (ushort)((_divisor & 0xFF00) | value); break;
            case 0: Transmit(value); break;
            case 1 when dlab: _divisor = (ushort)((_divisor & 0x00FF) | (value << 8)); break;
            case 1:
                // Enabling ETBEI while the holding register is empty raises THRE at once (as QEMU and real parts do).
                if ((value & IerThrEmpty) != 0 && (_ier & IerThrEmpty) == 0)
                    _thrEmptyPending = true;
                _ier = (byte)(value & 0x0F);
                break;
            case 2:
                // Changing FCR.0 resets both FIFOs; FCR.1 clears the receive FIFO (PC16550D FCR description).
                if (((value ^ _fcr) & FcrEnable) != 0 || (value & FcrClearReceive) != 0)
                    _fifoHead = _fifoCount = 0;
                _fcr = (byte)(value & 0xC9);       // bits 1-2 self-clear; 4-5 reserved
                break;
            case 3: _lcr = value; break;
            case 4:
            {
                byte before = ModemInputs();
                bool wasLoopback = Loopback;
                _mcr = (byte)(value & 0x1F);
                if (wasLoopback != Loopback)
                    _fifoHead = _fifoCount = 0;
                NoteModemChange(before, ModemInputs());
                break;
            }
            case 7: _scratch = value; break;
            default: break;                        // LSR and MSR are read-only (factory test writes ignored)
        }
    }

    private void Transmit(byte value)
    {
        if (Loopback)
        {
            // Loopback: the transmitter feeds the receiver; a full receiver overruns (LSR.OE). With FIFOs the new
            // character is lost; without, it replaces the unread one in RBR (PC16550D LSR bit 1).
            if (_fifoCount == Capacity)
            {
                _lsrErrors |= LsrOverrun;
                if (Capacity == 1)
                    _fifo[_fifoHead] = value;
            }
            else
            {
                Push(value);
            }
        }
        else
        {
            _sink.Write(value);
        }

        _thrEmptyPending = true;                   // transmitted at once: the holding register is empty again
    }

    // MSR bits 7:4. In loopback, OUT2 -> DCD, OUT1 -> RI, RTS -> CTS, DTR -> DSR (PC16550D MCR bit 4).
    private byte ModemInputs()
    {
        if (!Loopback)
            return MsrTerminalAttached;
        return (byte)(((_mcr & McrDtr) != 0 ? MsrDsr : 0) | ((_mcr & McrRts) != 0 ? MsrCts : 0)
            | ((_mcr & McrOut1) != 0 ? MsrRi : 0) | ((_mcr & McrOut2) != 0 ? MsrDcd : 0));
    }

    private void NoteModemChange(byte before, byte after)
    {
        byte changed = (byte)(before ^ after);
        if ((changed & MsrCts) != 0)
            _msrDeltas |= MsrDeltaCts;
        if ((changed & MsrDsr) != 0)
            _msrDeltas |= MsrDeltaDsr;
        if ((changed & MsrDcd) != 0)
            _msrDeltas |= MsrDeltaDcd;
        if ((before & MsrRi) != 0 && (after & MsrRi) == 0)
            _msrDeltas |= MsrTrailingRi;           // TERI: RI went from on to off
    }

    private byte InterruptIdentification()
    {
        if ((_ier & IerLineStatus) != 0 && _lsrErrors != 0)
            return IirLineStatus;
        if ((_ier & IerReceivedData) != 0 && _fifoCount != 0)
            return IirReceivedData;
        if ((_ier & IerThrEmpty) != 0 && _thrEmptyPending)
            return IirThrEmpty;
        if ((_ier & IerModemStatus) != 0 && _msrDeltas != 0)
            return IirModemStatus;
        return IirNone;
    }

    // The output follows IIR bit 0 (level), as QEMU's serial_update_irq and vm-superio do.
    private void UpdateInterrupt()
    {
        bool level = InterruptIdentification() != IirNone;
        if (level == _lineLevel)
            return;
        _lineLevel = level;
        _interrupt?.SetLevel(level);
    }

    private void Push(byte value)
    {
        _fifo[(_fifoHead + _fifoCount) % FifoSize] = value;
        _fifoCount++;
    }

    private byte Pop()
    {
        if (_fifoCount == 0)
            return 0;
        byte value = _fifo[_fifoHead];
        _fifoHead = (_fifoHead + 1) % FifoSize;
        _fifoCount--;
        return value;
    }
}
