namespace VmmKit.Ept;

/// <summary>Why a guest-physical access failed: the first address that failed and what the EPT walk reported for it.</summary>
public readonly struct GuestMemoryFault
{
    /// <summary>Creates a fault.</summary>
    /// <param name="address">The guest-physical address whose translation failed.</param>
    /// <param name="status">Violation or misconfiguration.</param>
    /// <param name="qualification">The EPT-violation exit qualification (zero for a misconfiguration).</param>
    public GuestMemoryFault(GuestPhysicalAddress address, EptTranslationStatus status, EptViolationQualification qualification)
    {
        Address = address;
        Status = status;
        Qualification = qualification;
    }

    /// <summary>The guest-physical address whose translation failed (the guest-physical-address field of the exit).</summary>
    public GuestPhysicalAddress Address { get; }

    /// <summary><see cref="EptTranslationStatus.Violation"/> or <see cref="EptTranslationStatus.Misconfiguration"/>.</summary>
    public EptTranslationStatus Status { get; }

    /// <summary>The exit qualification for a violation; zero for a misconfiguration.</summary>
    public EptViolationQualification Qualification { get; }

    /// <summary>Formats the fault.</summary>
    /// <returns>A readable description.</returns>
    public override string ToString() => $"{Status} at {Address} {Qualification}";
}
