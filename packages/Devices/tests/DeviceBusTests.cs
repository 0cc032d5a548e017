using CsCheck;

namespace VmmKit.Devices.Tests;

public class DeviceBusTests
{
    [Fact]
    public void Dispatches_to_the_device_with_base_and_offset()
    {
        var bus = new DeviceBus(0xFFFF);
        var a = new ProbeDevice();
        Assert.True(bus.TryRegister(new BusRange(0x3F8, 8), a));
        Assert.True(bus.TryRegister(new BusRange(0x2F8, 8), a));     // one device, two ranges
        Span<byte> two = stackalloc byte[2];
        Assert.True(bus.TryRead(0x3FA, two));
        Assert.Equal([0x12, 0x13], two.ToArray());
        Assert.True(bus.TryWrite(0x2F9, [1]));
        Assert.Equal([(0x3F8ul, 2ul, 2, false), (0x2F8ul, 1ul, 1, true)], a.Accesses);
    }

    [Theory]
    [InlineData(0x3F8ul, 8ul)]
    [InlineData(0x3F0ul, 9ul)]
    [InlineData(0x3FFul, 1ul)]
    [InlineData(0x300ul, 0x200ul)]
    public void Overlapping_ranges_are_refused(ulong start, ulong size)
    {
        var bus = new DeviceBus(0xFFFF);
        Assert.True(bus.TryRegister(new BusRange(0x3F8, 8), new ProbeDevice()));
        Assert.False(bus.TryRegister(new BusRange(start, size), new ProbeDevice()));
        Assert.Equal(1, bus.Count);
    }

    [Fact]
    public void Empty_wrapping_and_out_of_bus_ranges_are_refused()
    {
        var ports = new DeviceBus(0xFFFF);
        Assert.False(ports.TryRegister(new BusRange(0x10, 0), new ProbeDevice()));
        Assert.False(ports.TryRegister(new BusRange(0xFFFF, 2), new ProbeDevice()));
        Assert.True(ports.TryRegister(new BusRange(0xFFFF, 1), new ProbeDevice()));
        var mmio = new DeviceBus(ulong.MaxValue);
        Assert.False(mmio.TryRegister(new BusRange(ulong.MaxValue, 2), new ProbeDevice()));
        Assert.True(mmio.TryRegister(new BusRange(ulong.MaxValue - 0xFFF, 0x1000), new ProbeDevice()));
    }

    [Fact]
    public void An_access_across_range_boundaries_is_split_and_the_unclaimed_bytes_are_left_alone()
    {
        // Xen's emulator splits an MMIO access at page boundaries (hvmemul_linear_mmio_access) and QEMU's memory core at
        // region boundaries: each device answers for its own bytes, what no device decodes keeps the caller's value.
        var bus = new DeviceBus(0xFFFF);
        var a = new ProbeDevice();
        var b = new ProbeDevice();
        bus.TryRegister(new BusRange(0x60, 1), a);
        bus.TryRegister(new BusRange(0x62, 4), b);
        Span<byte> eight = stackalloc byte[8];
        eight.Fill(0xAA);
        Assert.True(bus.TryRead(0x5F, eight));
        Assert.Equal(new byte[] { 0xAA, 0x10, 0xAA, 0x10, 0x11, 0x12, 0x13, 0xAA }, eight.ToArray());
        Assert.Equal([(0x60ul, 0ul, 1, false)], a.Accesses);
        Assert.Equal([(0x62ul, 0ul, 4, false)], b.Accesses);
        Assert.True(bus.TryWrite(0x65, [1, 2]));               // the last port of b, then nothing
        Assert.Equal((0x62ul, 3ul, 1, true), b.Accesses[^1]);

        Span<byte> four = stackalloc byte[4];
        four.Fill(0xAA);
        Assert.False(bus.TryRead(0x61, four[..1]));           // nobody
        Assert.False(bus.TryRead(0x66, four));
        Assert.Equal(0xAA, four[0]);
        var top = new DeviceBus(ulong.MaxValue);
        var c = new ProbeDevice();
        top.TryRegister(new BusRange(0, 16), c);
        Assert.False(top.TryRead(ulong.MaxValue, four[..2]));  // does not wrap to address 0
        Assert.Empty(c.Accesses);
    }

    [Fact]
    public void Unregister_frees_the_range()
    {
        var bus = new DeviceBus(0xFFFF);
        bus.TryRegister(new BusRange(0x70, 2), new ProbeDevice());
        Assert.False(bus.Unregister(0x71));
        Assert.True(bus.Unregister(0x70));
        Assert.False(bus.TryWrite(0x70, [0]));
        Assert.True(bus.TryRegister(new BusRange(0x70, 2), new ProbeDevice()));
    }

    [Fact]
    public void Io_manager_floats_unclaimed_ports_high_and_zero_extends()
    {
        var io = new IoManager();
        Assert.Equal(0xFFu, io.ReadPort(0x80, 1));
        Assert.Equal(0xFFFFu, io.ReadPort(0x80, 2));
        Assert.Equal(0xFFFF_FFFFu, io.ReadPort(0x80, 4));
        Assert.False(io.WritePort(0x80, 1, 0));
        var sink = new RecordingSink();
        Assert.True(io.PortIo.TryRegister(DebugConsolePort.DefaultRange, new DebugConsolePort(sink)));
        Assert.True(io.WritePort(0xE9, 1, 0x4142));
        Assert.Equal(0xE9u, io.ReadPort(0xE9, 1));
        Assert.Equal(0xFFFF_FFE9u, io.ReadPort(0xE9, 4));     // crosses the 1-port range: the rest floats
        Assert.Equal("B", sink.Text);
        Assert.Equal(0xFFFFu, io.ReadPort(0xFFFF, 2));        // the top port does not wrap
        Assert.Throws<ArgumentOutOfRangeException>(() => io.ReadPort(0, 3));
    }

    // Model-based: random registrations agree with a list model of non-overlapping ranges, and every lookup finds
    // exactly the model's owner.
    [Fact]
    public void Registration_and_lookup_agree_with_a_list_model()
    {
        Gen.Select(Gen.UShort[0, 0x1FF], Gen.UShort[0, 40]).Array[1, 40].Sample(ops =>
        {
            var bus = new DeviceBus(0x1FF);
            var model = new List<(BusRange Range, ProbeDevice Device)>();
            foreach (var (start, size) in ops)
            {
                var r = new BusRange(start, size);
                var d = new ProbeDevice();
                bool expected = r.IsValid && r.Last <= 0x1FF && !model.Any(m => m.Range.Overlaps(r));
                if (bus.TryRegister(r, d) != expected)
                    return false;
                if (expected)
                    model.Add((r, d));
            }

            for (ulong a = 0; a <= 0x1FF; a++)
            {
                var owner = model.FirstOrDefault(m => m.Range.Contains(a));
                bool found = bus.TryGetDevice(a, out var range, out var device);
                if (found != (owner.Device is not null) || (found && (range != owner.Range || device != owner.Device)))
                    return false;
            }

            return true;
        }, iter: 500);
    }

    // Model-based: a read split over random ranges gives each byte its owner's value and leaves the rest alone.
    [Fact]
    public void Split_reads_agree_with_a_byte_by_byte_model()
    {
        Gen.Select(Gen.Select(Gen.UShort[0, 0x3F], Gen.UShort[1, 6]).Array[0, 12], Gen.UShort[0, 0x3F], Gen.Int[1, 8]).Sample((ranges, start, size) =>
        {
            var bus = new DeviceBus(0x3F);
            var owned = new List<BusRange>();
            foreach (var (b, n) in ranges)
            {
                if (bus.TryRegister(new BusRange(b, n), new ProbeDevice()))
                    owned.Add(new BusRange(b, n));
            }

            var data = new byte[size];
            Array.Fill(data, (byte)0xAA);
            bool any = bus.TryRead(start, data);
            bool expectAny = false;
            for (int i = 0; i < size; i++)
            {
                ulong a = (ulong)start + (ulong)i;
                var owner = owned.FirstOrDefault(r => r.Contains(a));
                byte expected = owner.Size == 0 ? (byte)0xAA : (byte)(a - owner.Base + 0x10);
                expectAny |= owner.Size != 0;
                if (data[i] != expected)
                    return false;
            }

            return any == expectAny;
        }, iter: 1000);
    }
}
