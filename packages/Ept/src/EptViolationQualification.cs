namespace VmmKit.Ept;

/// <summary>
/// The exit qualification of an EPT violation (SDM Vol. 3C §28.2.1, Table 28-7 "Exit Qualification for EPT Violations").
/// </summary>
/// <remarks>
/// Bits 2:0 say what the access was; bits 5:3 (and 6 under mode-based execute control) are the logical AND of
/// the R/W/X (and user-execute) bits of every EPT entry the walk used, so they are 0 when an entry was not
/// present; bit 7 says the guest-linear-address field is valid; bit 8 tells a translation of that linear address
/// from an access to a guest paging-structure entry; bits 11:9 describe the linear translation (advanced
/// VM-exit information); bit 12 NMI unblocking due to IRET; bit 13 shadow-stack access; bit 15 guest-paging
/// verification; bit 16 asynchronous to instruction execution. Bits 7 and above describe the guest's own
/// paging and are supplied by whoever made the access (the emulated processor).
/// </remarks>
/// <param name="Value">The raw qualification.</param>
public readonly record struct EptViolationQualification(ulong Value)
{
    /// <summary>Bit 0: the access was a data read.</summary>
    public const ulong DataReadBit = 1UL << 0;

    /// <summary>Bit 1: the access was a data write.</summary>
    public const ulong DataWriteBit = 1UL << 1;

    /// <summary>Bit 2: the access was an instruction fetch.</summary>
    public const ulong InstructionFetchBit = 1UL << 2;

    /// <summary>Bit 3: the AND of bit 0 (read) of the EPT entries used.</summary>
    public const ulong ReadableBit = 1UL << 3;

    /// <summary>Bit 4: the AND of bit 1 (write) of the EPT entries used.</summary>
    public const ulong WritableBit = 1UL << 4;

    /// <summary>Bit 5: the AND of bit 2 (execute, or supervisor execute) of the EPT entries used.</summary>
    public const ulong ExecutableBit = 1UL << 5;

    /// <summary>Bit 6: the AND of bit 10 (user-mode execute) of the EPT entries used, under mode-based execute control.</summary>
    public const ulong UserExecutableBit = 1UL << 6;

    /// <summary>Bit 7: the guest-linear-address field of the exit is valid.</summary>
    public const ulong GuestLinearAddressValidBit = 1UL << 7;

    /// <summary>Bit 8 (when bit 7 is set): 1 for an access to the translation of the linear address, 0 for an access to a guest paging-structure entry.</summary>
    public const ulong TranslatedAccessBit = 1UL << 8;

    /// <summary>Bit 9 (when bits 7 and 8 are set): the linear address is a user-mode address.</summary>
    public const ulong UserModeLinearAddressBit = 1UL << 9;

    /// <summary>Bit 10 (when bits 7 and 8 are set): the linear address is writable in the guest's paging.</summary>
    public const ulong ReadWriteLinearAddressBit = 1UL << 10;

    /// <summary>Bit 11 (when bits 7 and 8 are set): the linear address is execute-disable in the guest's paging.</summary>
    public const ulong ExecuteDisableLinearAddressBit = 1UL << 11;

    /// <summary>Bit 12: NMI unblocking due to IRET.</summary>
    public const ulong NmiUnblockingBit = 1UL << 12;

    /// <summary>Bit 13: the access was a shadow-stack access.</summary>
    public const ulong ShadowStackAccessBit = 1UL << 13;

    /// <summary>Bit 14: supervisor shadow-stack rights of the leaf (when enabled in the EPTP).</summary>
    public const ulong SupervisorShadowStackBit = 1UL << 14;

    /// <summary>Bit 15: the violation arose in guest-paging verification.</summary>
    public const ulong GuestPagingVerificationBit = 1UL << 15;

    /// <summary>Bit 16: the access was asynchronous to instruction execution (e.g. a trace-buffer write).</summary>
    public const ulong AsynchronousBit = 1UL << 16;

    /// <summary>Bits 16:7: the part of the qualification that describes the guest-linear side, which the accessor supplies.</summary>
    public const ulong LinearFlagsMask = 0x1FF80;

    /// <summary>Bit 0.</summary>
    public bool WasRead => (Value & DataReadBit) != 0;

    /// <summary>Bit 1.</summary>
    public bool WasWrite => (Value & DataWriteBit) != 0;

    /// <summary>Bit 2.</summary>
    public bool WasInstructionFetch => (Value & InstructionFetchBit) != 0;

    /// <summary>Bit 3.</summary>
    public bool Readable => (Value & ReadableBit) != 0;

    /// <summary>Bit 4.</summary>
    public bool Writable => (Value & WritableBit) != 0;

    /// <summary>Bit 5.</summary>
    public bool Executable => (Value & ExecutableBit) != 0;

    /// <summary>Bit 6.</summary>
    public bool UserExecutable => (Value & UserExecutableBit) != 0;

    /// <summary>Bits 6:3 as <see cref="EptAccess"/>: the rights the walk granted.</summary>
    public EptAccess Permissions => (EptAccess)((Value >> 3) & 0xF);

    /// <summary>Bit 7.</summary>
    public bool GuestLinearAddressValid => (Value & GuestLinearAddressValidBit) != 0;

    /// <summary>Bit 8.</summary>
    public bool IsTranslationOfLinearAddress => (Value & TranslatedAccessBit) != 0;

    /// <summary>Bit 9.</summary>
    public bool IsUserModeLinearAddress => (Value & UserModeLinearAddressBit) != 0;

    /// <summary>Bit 10.</summary>
    public bool IsWritableLinearAddress => (Value & ReadWriteLinearAddressBit) != 0;

    /// <summary>Bit 11.</summary>
    public bool IsExecuteDisableLinearAddress => (Value & ExecuteDisableLinearAddressBit) != 0;

    /// <summary>Bit 12.</summary>
    public bool NmiUnblocking => (Value & NmiUnblockingBit) != 0;

    /// <summary>Bit 13.</summary>
    public bool IsShadowStackAccess => (Value & ShadowStackAccessBit) != 0;

    /// <summary>Bit 16.</summary>
    public bool IsAsynchronous => (Value & AsynchronousBit) != 0;

    /// <summary>
    /// The linear-address flags an accessor passes to a translation: bit 7, bit 8, and (only when both are set) bits 11:9.
    /// </summary>
    /// <param name="translationOfLinearAddress">True for an access to the linear address's translation, false for a guest paging-structure access.</param>
    /// <param name="userMode">The linear address is user-mode accessible.</param>
    /// <param name="writable">The linear address is writable.</param>
    /// <param name="executeDisable">The linear address is execute-disable.</param>
    /// <returns>Bits 11:7 of a qualification.</returns>
    public static EptViolationQualification ForLinearAddress(bool translationOfLinearAddress, bool userMode = false, bool writable = false, bool executeDisable = false)
    {
        ulong v = GuestLinearAddressValidBit;
        if (translationOfLinearAddress)
        {
            v |= TranslatedAccessBit
                | (userMode ? UserModeLinearAddressBit : 0)
                | (writable ? ReadWriteLinearAddressBit : 0)
                | (executeDisable ? ExecuteDisableLinearAddressBit : 0);
        }

        return new EptViolationQualification(v);
    }

    /// <summary>This qualification with bit 12 (NMI unblocking due to IRET) set or cleared.</summary>
    /// <param name="nmiUnblocking">The new value.</param>
    /// <returns>The changed qualification.</returns>
    public EptViolationQualification WithNmiUnblocking(bool nmiUnblocking) =>
        new(nmiUnblocking ? Value | NmiUnblockingBit : Value & ~NmiUnblockingBit);

    /// <summary>Formats the qualification as its raw value and decoded bits.</summary>
    /// <returns>A readable description.</returns>
    public override string ToString() =>
        $"0x{Value:x} [{(WasRead ? "R" : "")}{(WasWrite ? "W" : "")}{(WasInstructionFetch ? "X" : "")} allowed {Permissions}{(GuestLinearAddressValid ? (IsTranslationOfLinearAddress ? " linear" : " paging-structure") : "")}{(NmiUnblocking ? " nmi-unblock" : "")}]";
}
