using VmmKit.Ept;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Guest-physical pages through VmmKit.Ept (EPT walk with its translation cache).</summary>
internal sealed unsafe class EptPageSource : IGuestPageSource
{
    /// <summary>Wraps <paramref name="memory"/>.</summary>
    public EptPageSource(GuestPhysicalMemory memory) => Memory = memory;

    /// <summary>The guest-physical view.</summary>
    public GuestPhysicalMemory Memory { get; }

    /// <inheritdoc/>
    public byte* GetHostPage(ulong gpa, MemoryAccess access, out ulong violation, out bool misconfiguration)
    {
        if (Memory.TryGetHostPage(new GuestPhysicalAddress(gpa), (EptAccess)(int)access, out byte* page, out GuestMemoryFault fault))
        {
            violation = 0;
            misconfiguration = false;
            return page;
        }
        violation = fault.Qualification.Value;
        misconfiguration = fault.Status == EptTranslationStatus.Misconfiguration;
        return null;
    }
}
