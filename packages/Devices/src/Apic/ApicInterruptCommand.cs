namespace VmmKit.Devices;

/// <summary>
/// A decoded interrupt command (SDM Vol. 3A §11.6.1 Figure 11-12; x2APIC §11.12.9 Figure 11-28): what a
/// write to the ICR (or to x2APIC SELF IPI) asks the APIC bus to deliver.
/// </summary>
/// <param name="Vector">Bits 7:0: the vector (the start-up page for a SIPI; ignored for NMI and INIT).</param>
/// <param name="DeliveryMode">Bits 10:8.</param>
/// <param name="LogicalDestination">Bit 11: the destination is a logical (LDR-matched) one, else a physical APIC ID.</param>
/// <param name="Assert">Bit 14: level assert (0 only for the legacy INIT level de-assert).</param>
/// <param name="LevelTriggered">Bit 15: trigger mode.</param>
/// <param name="Shorthand">Bits 19:18.</param>
/// <param name="Destination">The destination: ICR bits 63:56 in xAPIC mode, bits 63:32 in x2APIC mode.</param>
/// <param name="X2Apic">True when sent in x2APIC mode (32-bit destinations, 0xFFFFFFFF broadcast).</param>
public readonly record struct ApicInterruptCommand(byte Vector, ApicDeliveryMode DeliveryMode, bool LogicalDestination, bool Assert,
    bool LevelTriggered, ApicDestinationShorthand Shorthand, uint Destination, bool X2Apic)
{
    /// <summary>The broadcast destination: 0xFF in xAPIC mode, 0xFFFFFFFF in x2APIC mode.</summary>
    public uint Broadcast => X2Apic ? uint.MaxValue : 0xFF;

    /// <summary>True for the legacy "INIT level de-assert" message, which modern processors ignore (SDM Vol. 3A §11.6.1).</summary>
    public bool IsInitLevelDeassert => DeliveryMode == ApicDeliveryMode.Init && !Assert && LevelTriggered;

    /// <summary>Decodes a 64-bit ICR value (xAPIC: ICR high in bits 63:32, destination in 63:56).</summary>
    /// <param name="icr">The ICR.</param>
    /// <param name="x2Apic">True in x2APIC mode.</param>
    /// <returns>The command.</returns>
    public static ApicInterruptCommand FromIcr(ulong icr, bool x2Apic) => new(
        (byte)icr, (ApicDeliveryMode)((icr >> 8) & 7), (icr & (1ul << 11)) != 0, (icr & (1ul << 14)) != 0,
        (icr & (1ul << 15)) != 0, (ApicDestinationShorthand)((icr >> 18) & 3),
        x2Apic ? (uint)(icr >> 32) : (uint)(icr >> 56), x2Apic);
}
