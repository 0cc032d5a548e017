namespace VmmKit.ReferenceHypervisor.Devices;

/// <summary>
/// The transmit side of a 16550A UART (COM1 at 0x3F8; register map from the National Semiconductor
/// PC16550D data sheet): bytes written to THR go to the domain console immediately, so LSR always
/// reports the transmitter empty (THRE | TEMT). There is no receiver: RBR reads 0 and LSR.DR is
/// clear. Divisor latch, IER, LCR, MCR and scratch hold what the guest writes; loopback mode echoes
/// MCR into MSR so probing drivers (Linux's autoconfig) recognise the chip.
/// </summary>
internal sealed class Uart16550(DomainConsole console)
{
    /// <summary>I/O base of COM1.</summary>
    public const ushort Com1Base = 0x3F8;

    /// <summary>Number of I/O ports the UART decodes.</summary>
    public const int PortCount = 8;

    private const byte LcrDlab = 0x80, McrLoopback = 0x10;
    private const byte LsrThrEmpty = 0x20, LsrTransmitterEmpty = 0x40, LsrDataReady = 0x01;
    private const byte IirNoInterrupt = 0x01, IirFifoEnabled = 0xC0;

    private byte _ier, _lcr, _mcr, _scratch, _fcr, _dll = 0x01, _dlm, _loopbackData;
    private bool _loopbackHasData;

    /// <summary>True for ports this UART decodes.</summary>
    public static bool Decodes(ushort port) => port >= Com1Base && port < Com1Base + PortCount;

    /// <summary>OUT to register <c>port - base</c>.</summary>
    public void Write(ushort port, byte value)
    {
        bool dlab = (_lcr & LcrDlab) != 0;
        switch (port - Com1Base)
        {
            case 0 when dlab: _dll = value; break;
            case 0 when (_mcr & McrLoopback) != 0: _loopbackData = value; _loopbackHasData = true; break;
            case 0: console.Write(value); break;
            case 1 when dlab: _dlm = value; break;
            case 1: _ier = (byte)(value & 0x0F); break;
            case 2: _fcr = value; break;
            case 3: _lcr = value; break;
            case 4: _mcr = (byte)(value & 0x1F); break;
            case 7: _scratch = value; break;
            default: break;                                // LSR and MSR are read-only
        }
    }

    /// <summary>IN from register <c>port - base</c>.</summary>
    public byte Read(ushort port)
    {
        bool dlab = (_lcr & LcrDlab) != 0;
        switch (port - Com1Base)
        {
            case 0 when dlab: return _dll;
            case 0:
                _loopbackHasData = false;
                return (_mcr & McrLoopback) != 0 ? _loopbackData : (byte)0;
            case 1: return dlab ? _dlm : _ier;
            case 2: return (byte)(IirNoInterrupt | ((_fcr & 1) != 0 ? IirFifoEnabled : 0));
            case 3: return _lcr;
            case 4: return _mcr;
            case 5: return (byte)(LsrThrEmpty | LsrTransmitterEmpty | (_loopbackHasData ? LsrDataReady : 0));
            case 6: return ModemStatus();
            default: return _scratch;
        }
    }

    private byte ModemStatus()
    {
        if ((_mcr & McrLoopback) == 0)
            return 0xB0;                                   // DCD | DSR | CTS: a terminal is attached
        // Loopback: DTR -> DSR, RTS -> CTS, OUT1 -> RI, OUT2 -> DCD.
        return (byte)(((_mcr & 1) << 5) | ((_mcr & 2) << 3) | ((_mcr & 4) << 4) | ((_mcr & 8) << 4));
    }
}
