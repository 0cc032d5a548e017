using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>The example of packages/Ept/README.md, kept compiling and true.</summary>
public sealed class ReadmeExampleTests
{
    [Fact]
    public void Readme_example_runs_as_documented()
    {
        using var machine = new MachineMemory(64UL << 30);          // 64 GiB, reserved lazily
        var dom1 = new FrameOwner(1);
        machine.SetLimit(dom1, 1UL << 18);                            // at most 1 GiB for d1

        using var ept = new EptTables(machine, dom1, accessedDirtyEnabled: true);
        MachineFrameNumber ram = machine.AllocateContiguous(dom1, 512, alignmentInFrames: 512);
        ept.Map(new GuestPhysicalAddress(0), ram, 512, EptAccess.ReadWriteExecute);   // one 2 MiB page

        var guest = new GuestPhysicalMemory(machine, ept.Pointer);   // ept.Pointer is the EPTP for the VMCS
        Assert.True(guest.TryWrite(new GuestPhysicalAddress(0x1000), 0xC0FFEEUL));

        ept.Protect(new GuestPhysicalAddress(0x1000), 1, EptAccess.Read);  // splits the 2 MiB page
        GuestPhysicalMemory.InvalidateSingleContext(machine, ept.Pointer); // INVEPT: edits never flush caches by themselves

        Assert.False(guest.TryWrite(new GuestPhysicalAddress(0x1000), 1UL, out GuestMemoryFault fault));
        Assert.Equal(EptTranslationStatus.Violation, fault.Status);
        Assert.True(fault.Qualification.WasWrite);
        Assert.True(fault.Qualification.Readable);
        Assert.False(fault.Qualification.Writable);
        Assert.True(guest.TryRead(new GuestPhysicalAddress(0x1000), out ulong value));
        Assert.Equal(0xC0FFEEUL, value);
    }
}
