namespace VmmKit.Ept;

/// <summary>Outcome of an EPT translation, matching the three ways hardware can end a walk (SDM Vol. 3C §29.3.3).</summary>
public enum EptTranslationStatus
{
    /// <summary>The access is allowed; the translation is valid.</summary>
    Success,

    /// <summary>EPT violation (exit reason 48): an entry was not present or denied the access; see the qualification.</summary>
    Violation,

    /// <summary>EPT misconfiguration (exit reason 49): a present entry holds an unsupported value (reserved bit, W without R, memory type 2/3/7), or the EPTP itself is invalid.</summary>
    Misconfiguration,
}
