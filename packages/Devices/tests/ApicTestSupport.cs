namespace VmmKit.Devices.Tests;

internal sealed class FakeClock : IGuestClock
{
    public ulong Tsc { get; set; }
}

internal sealed class RecordingHost : ILocalApicHost
{
    public int Kicks { get; private set; }
    public int Inits { get; private set; }
    public List<byte> Startups { get; } = [];
    public List<byte> LevelEois { get; } = [];

    public void InterruptPending(LocalApic apic) => Kicks++;
    public void InitReceived(LocalApic apic) => Inits++;
    public void StartupReceived(LocalApic apic, byte vector) => Startups.Add(vector);
    public void LevelTriggeredEoi(LocalApic apic, byte vector) => LevelEois.Add(vector);
}

/// <summary>xAPIC register access through the MMIO page, as a guest does it.</summary>
internal static class Mmio
{
    public static uint Read(LocalApic apic, int offset)
    {
        Span<byte> b = stackalloc byte[4];
        apic.Read(apic.BaseAddress, (ulong)offset, b);
        return BitConverter.ToUInt32(b);
    }

    public static void Write(LocalApic apic, int offset, uint value) =>
        apic.Write(apic.BaseAddress, (ulong)offset, BitConverter.GetBytes(value));

    /// <summary>An enabled xAPIC (SVR = 0x1FF) with a host and a clock.</summary>
    public static LocalApic Enabled(out RecordingHost host, out FakeClock clock, uint id = 0)
    {
        clock = new FakeClock();
        host = new RecordingHost();
        var apic = new LocalApic(id, id == 0, clock) { Host = host };
        Write(apic, 0xF0, 0x1FF);
        return apic;
    }
}
