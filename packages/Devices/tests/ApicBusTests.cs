namespace VmmKit.Devices.Tests;

/// <summary>IPIs through the ICR and <see cref="ApicBus"/> (SDM Vol. 3A §11.6).</summary>
public class ApicBusTests
{
    private static (ApicBus Bus, LocalApic[] Apics, RecordingHost[] Hosts) System(int count)
    {
        var bus = new ApicBus();
        var apics = new LocalApic[count];
        var hosts = new RecordingHost[count];
        for (int i = 0; i < count; i++)
        {
            apics[i] = Mmio.Enabled(out hosts[i], out _, (uint)i);
            bus.Add(apics[i]);
        }

        return (bus, apics, hosts);
    }

    private static void Icr(LocalApic apic, uint high, uint low)
    {
        Mmio.Write(apic, 0x310, high);
        Mmio.Write(apic, 0x300, low);
    }

    [Fact]
    public void Fixed_physical_ipi_reaches_only_its_destination_and_kicks_it()
    {
        var (_, a, h) = System(3);
        Icr(a[0], 2u << 24, 0x4041);
        Assert.Equal(0x41, a[2].AcknowledgeInterrupt());
        Assert.False(a[1].HasPendingInterrupt);
        Assert.Equal(1, h[2].Kicks);
        Assert.Equal(0, h[1].Kicks);
        Assert.Equal(0u, Mmio.Read(a[0], 0x300) & (1u << 12));   // delivery status idle
    }

    [Fact]
    public void Shorthands_select_self_all_and_all_but_self()
    {
        var (_, a, _) = System(3);
        Icr(a[1], 0, 0x44050);                             // self
        Assert.Equal([false, true, false], a.Select(x => x.HasPendingInterrupt));
        Assert.Equal(0x50, a[1].AcknowledgeInterrupt());
        Mmio.Write(a[1], 0xB0, 0);
        Icr(a[1], 0, 0xC4051);                             // all excluding self
        Assert.Equal([true, false, true], a.Select(x => x.HasPendingInterrupt));
        Icr(a[1], 0, 0x84052);                             // all including self
        Assert.Equal([0x52, 0x52, 0x52], a.Select(x => x.GetHighestPendingVector()));
        Icr(a[0], 0xFFu << 24, 0x4053);                    // physical broadcast 0xFF
        Assert.All(a, x => Assert.Equal(0x53, x.GetHighestPendingVector()));
    }

    [Fact]
    public void Logical_flat_and_cluster_destinations_match_the_ldr()
    {
        var (_, a, _) = System(3);
        Mmio.Write(a[0], 0xD0, 0x01u << 24);
        Mmio.Write(a[1], 0xD0, 0x02u << 24);
        Mmio.Write(a[2], 0xD0, 0x04u << 24);
        Icr(a[0], 0x06u << 24, 0x4860);                    // logical, flat: bits 1 and 2
        Assert.Equal([false, true, true], a.Select(x => x.HasPendingInterrupt));
        foreach (var x in a)
            Mmio.Write(x, 0xE0, 0x0FFFFFFF);               // cluster model
        Mmio.Write(a[0], 0xD0, 0x11u << 24);
        Mmio.Write(a[1], 0xD0, 0x12u << 24);
        Mmio.Write(a[2], 0xD0, 0x21u << 24);
        Icr(a[0], 0x13u << 24, 0x4870);                    // cluster 1, members 0 and 1
        Assert.Equal([0x70, 0x70, 0x60], a.Select(x => x.GetHighestPendingVector()));
    }

    [Fact]
    public void X2apic_physical_and_cluster_destinations_are_32_bits()
    {
        var (_, a, _) = System(3);
        foreach (var x in a)
            Assert.Equal(ApicAccessResult.Ok, x.WriteMsr(LocalApic.ApicBaseMsr, 0xFEE00000 | LocalApic.ApicBaseEnable | LocalApic.ApicBaseExtd));
        Assert.Equal(ApicAccessResult.Ok, a[0].WriteMsr(0x830, (2ul << 32) | 0x4061));
        Assert.Equal([false, false, true], a.Select(x => x.HasPendingInterrupt));
        // Logical cluster 0, members 0 and 1 (LDR of ID n is 1 << n in cluster 0).
        Assert.Equal(ApicAccessResult.Ok, a[2].WriteMsr(0x830, (0x3ul << 32) | 0x4862));
        Assert.Equal([0x62, 0x62, 0x61], a.Select(x => x.GetHighestPendingVector()));
    }

    [Fact]
    public void Nmi_init_and_startup_reach_the_host()
    {
        var (_, a, h) = System(2);
        Icr(a[0], 1u << 24, 0x4400);                       // NMI
        Assert.True(a[1].HasPendingNmi);
        Mmio.Write(a[1], 0x80, 0x20);
        Icr(a[0], 1u << 24, 0x4500);                       // INIT: the target's APIC resets
        Assert.Equal(1, h[1].Inits);
        Assert.Equal(0u, Mmio.Read(a[1], 0x80));
        Assert.Equal(0xFFu, Mmio.Read(a[1], 0xF0));
        Assert.Equal(0x01000000u, Mmio.Read(a[1], 0x20));  // the ID survives INIT
        Icr(a[0], 1u << 24, 0x8500);                       // INIT level de-assert: ignored
        Assert.Equal(1, h[1].Inits);
        Icr(a[0], 1u << 24, 0x4610);                       // SIPI, start page 0x10
        Assert.Equal([(byte)0x10], h[1].Startups);
    }

    [Fact]
    public void Lowest_priority_goes_to_the_target_with_the_lowest_ppr()
    {
        var (_, a, _) = System(3);
        Mmio.Write(a[0], 0x80, 0x30);
        Mmio.Write(a[1], 0x80, 0x10);
        Mmio.Write(a[2], 0x80, 0x20);
        Icr(a[0], 0xFFu << 24, 0x4165);                    // lowest priority to everyone
        Assert.Equal([false, true, false], a.Select(x => x.HasPendingInterrupt));
    }

    [Fact]
    public void A_duplicate_apic_id_is_refused()
    {
        var bus = new ApicBus();
        bus.Add(new LocalApic(1, false, new FakeClock()));
        Assert.Throws<ArgumentException>(() => bus.Add(new LocalApic(1, false, new FakeClock())));
    }

    [Fact]
    public void Without_a_bus_only_self_directed_ipis_are_delivered()
    {
        var apic = Mmio.Enabled(out _, out _, id: 4);
        Mmio.Write(apic, 0x310, 5u << 24);
        Mmio.Write(apic, 0x300, 0x4070);
        Assert.False(apic.HasPendingInterrupt);
        Mmio.Write(apic, 0x310, 4u << 24);
        Mmio.Write(apic, 0x300, 0x4071);
        Assert.Equal(0x71, apic.GetHighestPendingVector());
    }
}
