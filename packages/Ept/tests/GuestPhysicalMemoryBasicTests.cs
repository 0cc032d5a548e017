using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

public sealed unsafe class GuestPhysicalMemoryBasicTests
{
    private static readonly FrameOwner Dom1 = new(1);

    [Fact]
    public void Reads_and_writes_cross_pages_and_fail_cleanly()
    {
        using var memory = new MachineMemory(16UL << 20);
        using var ept = new EptTables(memory, Dom1);
        MachineFrameNumber a = memory.AllocateFrame(Dom1);
        MachineFrameNumber b = memory.AllocateFrame(Dom1);
        ept.Map(new GuestPhysicalAddress(0x10000), a, 1, EptAccess.Read | EptAccess.Write);
        ept.Map(new GuestPhysicalAddress(0x11000), b, 1, EptAccess.Read | EptAccess.Write);
        var gpm = new GuestPhysicalMemory(memory, ept.Pointer);
        Assert.True(gpm.TryWrite(new GuestPhysicalAddress(0x10FFC), 0x1122334455667788UL));
        Assert.Equal(0x55667788u, BitConverter.ToUInt32(memory.GetFrame(a)[4092..]));
        Assert.Equal(0x11223344u, BitConverter.ToUInt32(memory.GetFrame(b)[..4]));
        Assert.True(gpm.TryRead(new GuestPhysicalAddress(0x10FFC), out ulong v));
        Assert.Equal(0x1122334455667788UL, v);

        Assert.False(gpm.TryRead(new GuestPhysicalAddress(0x11FFC), out v, out GuestMemoryFault fault));
        Assert.Equal(EptTranslationStatus.Violation, fault.Status);
        Assert.Equal(new GuestPhysicalAddress(0x12000), fault.Address);
        Assert.Equal(EptViolationQualification.DataReadBit, fault.Qualification.Value);

        Assert.True(gpm.TryCompareExchange32(new GuestPhysicalAddress(0x10000), 7, 0, out uint original, out _));
        Assert.Equal(0u, original);
        Assert.True(gpm.TryCompareExchange32(new GuestPhysicalAddress(0x10000), 9, 0, out original, out _));
        Assert.Equal(7u, original);
        Assert.True(gpm.TryRead(new GuestPhysicalAddress(0x10000), out uint now));
        Assert.Equal(7u, now);
    }
}
