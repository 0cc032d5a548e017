namespace VmmKit.Devices.Tests;

public class Uart16550Tests
{
    private const int Rbr = 0, Ier = 1, Iir = 2, Fcr = 2, Lcr = 3, Mcr = 4, Lsr = 5, Msr = 6, Scr = 7;

    private static byte R(Uart16550 u, int reg)
    {
        Span<byte> b = stackalloc byte[1];
        u.Read(Uart16550.Com1Base, (ulong)reg, b);
        return b[0];
    }

    private static void W(Uart16550 u, int reg, byte value) => u.Write(Uart16550.Com1Base, (ulong)reg, [value]);

    [Fact]
    public void Reset_state_matches_the_data_sheet()
    {
        var u = new Uart16550(new RecordingSink());
        Assert.Equal(0x00, R(u, Ier));
        Assert.Equal(0x01, R(u, Iir));
        Assert.Equal(0x00, R(u, Lcr));
        Assert.Equal(0x00, R(u, Mcr));
        Assert.Equal(0x60, R(u, Lsr));
        Assert.Equal(0xB0, R(u, Msr));
        Assert.Equal(Uart16550.DefaultDivisor, u.Divisor);
    }

    [Fact]
    public void Transmit_goes_to_the_sink_and_the_transmitter_stays_empty()
    {
        var sink = new RecordingSink();
        var u = new Uart16550(sink);
        W(u, Rbr, (byte)'h');
        W(u, Rbr, (byte)'i');
        Assert.Equal("hi", sink.Text);
        Assert.Equal(0x60, R(u, Lsr));
    }

    [Fact]
    public void The_divisor_latch_is_behind_dlab()
    {
        var sink = new RecordingSink();
        var u = new Uart16550(sink);
        W(u, Lcr, 0x83);
        W(u, Rbr, 0x01);
        W(u, Ier, 0x02);
        Assert.Equal(0x0201, u.Divisor);
        Assert.Equal(0x01, R(u, Rbr));
        Assert.Equal(0x02, R(u, Ier));
        W(u, Lcr, 0x03);
        Assert.Equal(0x00, R(u, Ier));                        // IER untouched by the DLM write
        Assert.Empty(sink.Bytes);                             // DLL writes are not transmitted
    }

    [Fact]
    public void Loopback_echoes_transmit_into_receive_and_mcr_into_msr()
    {
        var sink = new RecordingSink();
        var u = new Uart16550(sink);
        W(u, Mcr, 0x1F);                                      // loopback + DTR, RTS, OUT1, OUT2
        Assert.Equal(0xF0, R(u, Msr) & 0xF0);
        W(u, Rbr, 0x55);
        Assert.Equal(0x61, R(u, Lsr));                        // data ready
        Assert.Equal(0x55, R(u, Rbr));
        Assert.Equal(0x60, R(u, Lsr));
        Assert.Empty(sink.Bytes);
        Assert.Equal(0, u.EnqueueInput("x"u8));              // host input is disconnected in loopback
    }

    [Fact]
    public void Loopback_modem_changes_set_the_delta_bits_until_msr_is_read()
    {
        var u = new Uart16550(new RecordingSink());
        W(u, Mcr, 0x10 | 0x04);                               // loopback, OUT1 -> RI
        R(u, Msr);
        W(u, Mcr, 0x10 | 0x01);                               // RI off (trailing edge), DTR -> DSR on
        Assert.Equal(0x20 | 0x04 | 0x02, R(u, Msr));
        Assert.Equal(0x20, R(u, Msr));
    }

    [Fact]
    public void Loopback_overrun_sets_lsr_oe_and_a_line_status_interrupt()
    {
        var line = new RecordingLine();
        var u = new Uart16550(new RecordingSink(), line);
        W(u, Ier, 0x04);
        W(u, Mcr, 0x10);
        W(u, Rbr, 1);                                         // FIFO off: one holding register
        W(u, Rbr, 2);
        Assert.Equal(0x06, R(u, Iir));
        Assert.True(line.Level);
        Assert.Equal(0x63, R(u, Lsr));                        // DR | OE | THRE | TEMT
        Assert.Equal(0x61, R(u, Lsr));                        // OE cleared by the read
        Assert.False(line.Level);
        Assert.Equal(2, R(u, Rbr));                           // the new character destroyed the unread one
    }

    [Fact]
    public void A_loopback_overrun_with_fifos_keeps_the_fifo_and_loses_the_new_character()
    {
        // PC16550D LSR bit 1: in FIFO mode the character in the shift register is overwritten, not moved into the full
        // FIFO; without FIFOs it replaces the unread one in RBR (QEMU's serial_receive1 and recv_fifo_put alike).
        var u = new Uart16550(new RecordingSink());
        W(u, Fcr, 0x01);
        W(u, Mcr, 0x10);
        for (int i = 0; i < Uart16550.FifoSize + 1; i++)
            W(u, Rbr, (byte)(i + 1));
        Assert.Equal(0x63, R(u, Lsr));
        for (int i = 0; i < Uart16550.FifoSize; i++)
            Assert.Equal(i + 1, R(u, Rbr));
        Assert.Equal(0x60, R(u, Lsr));
    }

    [Fact]
    public void Host_input_fills_the_fifo_and_raises_received_data_available()
    {
        var line = new RecordingLine();
        var u = new Uart16550(new RecordingSink(), line);
        W(u, Fcr, 0x07);                                      // enable and clear FIFOs
        Assert.Equal(0xC1, R(u, Iir));
        W(u, Ier, 0x01);
        Assert.Equal(16, u.EnqueueInput(new byte[20]));       // 16-byte FIFO; the host keeps the rest
        Assert.Equal(0, u.InputSpace);
        Assert.True(line.Level);
        Assert.Equal(0xC4, R(u, Iir));
        for (int i = 0; i < 16; i++)
            R(u, Rbr);
        Assert.Equal(0xC1, R(u, Iir));
        Assert.False(line.Level);
        Assert.Equal([true, false], line.Changes);
    }

    [Fact]
    public void Without_fifos_the_receiver_holds_one_byte()
    {
        var u = new Uart16550(new RecordingSink());
        Assert.Equal(1, u.EnqueueInput("ab"u8));
        Assert.Equal((byte)'a', R(u, Rbr));
        Assert.Equal(0, R(u, Rbr));                           // empty RBR reads 0
    }

    [Fact]
    public void Thre_interrupt_on_enable_cleared_by_iir_read_and_raised_by_transmit()
    {
        var line = new RecordingLine();
        var u = new Uart16550(new RecordingSink(), line);
        W(u, Ier, 0x02);
        Assert.True(line.Level);
        Assert.Equal(0x02, R(u, Iir));
        Assert.False(line.Level);
        Assert.Equal(0x01, R(u, Iir));
        W(u, Rbr, (byte)'x');
        Assert.True(line.Level);
        Assert.Equal(0x02, R(u, Iir));
    }

    [Fact]
    public void Received_data_outranks_thre()
    {
        var u = new Uart16550(new RecordingSink());
        W(u, Ier, 0x03);
        u.EnqueueInput("z"u8);
        Assert.Equal(0x04, R(u, Iir));
        Assert.Equal(0x04, R(u, Iir));                        // THRE stays pending behind it
        R(u, Rbr);
        Assert.Equal(0x02, R(u, Iir));
    }

    [Fact]
    public void Modem_status_interrupt_needs_ier_bit_3()
    {
        var u = new Uart16550(new RecordingSink());
        W(u, Mcr, 0x10);
        W(u, Mcr, 0x12);                                      // RTS -> CTS changes
        Assert.Equal(0x01, R(u, Iir));
        W(u, Ier, 0x08);
        Assert.Equal(0x00, R(u, Iir));
        R(u, Msr);
        Assert.Equal(0x01, R(u, Iir));
    }

    [Fact]
    public void Scratch_holds_a_byte_and_wide_accesses_split_into_bytes()
    {
        var u = new Uart16550(new RecordingSink());
        W(u, Scr, 0xA5);
        Assert.Equal(0xA5, R(u, Scr));
        Span<byte> two = stackalloc byte[2];
        u.Read(Uart16550.Com1Base, 5, two);                   // LSR then MSR
        Assert.Equal([0x60, 0xB0], two.ToArray());
        u.Read(Uart16550.Com1Base, 7, two);                   // past the last register reads as a floating bus
        Assert.Equal([0xA5, 0xFF], two.ToArray());
    }

    [Fact]
    public void Through_the_bus_as_a_guest_sees_it()
    {
        var io = new IoManager();
        var sink = new RecordingSink();
        Assert.True(io.PortIo.TryRegister(Uart16550.Com1Range, new Uart16550(sink)));
        Assert.False(io.PortIo.TryRegister(new BusRange(0x3FC, 1), new ProbeDevice()));
        foreach (char c in "ok\n")
            io.WritePort(0x3F8, 1, c);
        Assert.Equal(0x60u, io.ReadPort(0x3FD, 1));
        Assert.Equal("ok\n", sink.Text);
    }
}
