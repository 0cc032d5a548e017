using System.Runtime.CompilerServices;

namespace VmmKit.Ept;

/// <summary>
/// Walks real EPT paging structures in <see cref="MachineMemory"/> the way a processor does
/// (SDM Vol. 3C §29.3.2 translation, §29.3.3 misconfigurations and violations, §29.3.5 accessed and dirty flags).
/// </summary>
/// <remarks>
/// The walk reads each entry once, stops at the first entry that is not present (violation), reports the first
/// present entry holding an unsupported value as a misconfiguration, and otherwise checks the access against the
/// AND of the rights of every level. Execute-only translations and 1 GiB pages are supported (as reported by
/// IA32_VMX_EPT_VPID_CAP bits 0 and 17 on current processors). A structure that lies outside machine memory is
/// reported as a misconfiguration rather than read. On success, when the EPTP enables accessed and dirty flags,
/// the accessed flag is set atomically in every entry used and the dirty flag in the leaf for a write, each with a
/// compare-exchange against the entry the walk read; if another thread changed one of those entries meanwhile (an edit
/// of <see cref="EptTables"/>), the walk is made again on what the tables hold now, so that a write does not go through
/// an entry whose dirty flag it could not set (at most 64 walks: tables rewritten without end get the last one).
/// </remarks>
public static unsafe class EptWalker
{
    private const ulong AllRights = EptEntry.PermissionMask | EptEntry.UserExecuteBit;

    // Walks made for one translation when entries keep changing under the A/D update: tables that another thread rewrites
    // without end (a guest's own tables walked for it) cannot hold the walk forever; the last walk then stands.
    private const int MaxWalks = 64;

    /// <summary>Translates <paramref name="gpa"/> for <paramref name="access"/> without mode-based execute control.</summary>
    /// <param name="memory">The machine memory holding the tables.</param>
    /// <param name="eptp">The EPTP naming the root table.</param>
    /// <param name="gpa">The guest-physical address.</param>
    /// <param name="access">The access being made (Read, Write, Execute, or a combination for read-modify-write).</param>
    /// <param name="linearFlags">Bits 16:7 of the qualification, describing the guest linear address (see <see cref="EptViolationQualification.ForLinearAddress"/>); default when the access has no linear address.</param>
    /// <param name="translation">The translation on success.</param>
    /// <param name="violation">The exit qualification on a violation.</param>
    /// <returns>How the walk ended.</returns>
    public static EptTranslationStatus Translate(MachineMemory memory, EptPointer eptp, GuestPhysicalAddress gpa, EptAccess access, EptViolationQualification linearFlags, out EptTranslation translation, out EptViolationQualification violation) =>
        Translate(memory, eptp, gpa, access, linearFlags, modeBasedExecuteControl: false, out translation, out violation);

    /// <summary>Translates <paramref name="gpa"/> for <paramref name="access"/>.</summary>
    /// <param name="memory">The machine memory holding the tables.</param>
    /// <param name="eptp">The EPTP naming the root table.</param>
    /// <param name="gpa">The guest-physical address.</param>
    /// <param name="access">The access being made. Under mode-based execute control, <see cref="EptAccess.Execute"/> is a supervisor-mode fetch and <see cref="EptAccess.UserExecute"/> a user-mode fetch; without it, both are checked against bit 2.</param>
    /// <param name="linearFlags">Bits 16:7 of the qualification, describing the guest linear address; default when the access has no linear address.</param>
    /// <param name="modeBasedExecuteControl">The "mode-based execute control for EPT" VM-execution control: bit 10 counts for presence and user-mode fetches.</param>
    /// <param name="translation">The translation on success.</param>
    /// <param name="violation">The exit qualification on a violation.</param>
    /// <returns>How the walk ended.</returns>
    public static EptTranslationStatus Translate(MachineMemory memory, EptPointer eptp, GuestPhysicalAddress gpa, EptAccess access, EptViolationQualification linearFlags, bool modeBasedExecuteControl, out EptTranslation translation, out EptViolationQualification violation)
    {
        ArgumentNullException.ThrowIfNull(memory);
        return Walk(memory, eptp, gpa, access, linearFlags, modeBasedExecuteControl, walks: 1, out translation, out violation);
    }

    // A walk made again because an entry changed under its A/D update: out of line, so that the first walk's code has no
    // loop back to its start.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static EptTranslationStatus WalkAgain(MachineMemory memory, EptPointer eptp, GuestPhysicalAddress gpa, EptAccess access, EptViolationQualification linearFlags, bool modeBasedExecuteControl, int walks, out EptTranslation translation, out EptViolationQualification violation) =>
        Walk(memory, eptp, gpa, access, linearFlags, modeBasedExecuteControl, walks, out translation, out violation);

    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static EptTranslationStatus Walk(MachineMemory memory, EptPointer eptp, GuestPhysicalAddress gpa, EptAccess access, EptViolationQualification linearFlags, bool modeBasedExecuteControl, int walks, out EptTranslation translation, out EptViolationQualification violation)
    {
        translation = default;
        violation = default;
        if (!eptp.IsValid)
        {
            return EptTranslationStatus.Misconfiguration; // VM entry would have failed; nothing sensible to walk
        }

        int levels = eptp.PageWalkLength;
        if ((gpa.Value >> (Page.PageShift + (9 * levels))) != 0)
        {
            // Guest-physical bits above what the walk can index cause an EPT violation (SDM §29.3.3.2); no entry was used.
            violation = MakeViolation(access, 0, linearFlags, modeBasedExecuteControl);
            return EptTranslationStatus.Violation;
        }

        byte* basePtr = memory.Base;
        ulong size = memory.SizeInBytes;
        ulong presentMask = modeBasedExecuteControl ? AllRights : EptEntry.PermissionMask;
        bool accessedDirty = eptp.AccessedDirtyEnabled;
        ulong* path = stackalloc ulong[5]; // with A/D flags: each level's slot, and what the walk read there
        ulong* seen = stackalloc ulong[5];
        ulong rights = AllRights;
        ulong table = eptp.Root.Address;
        for (int level = levels; level >= 1; level--)
        {
            if (table >= size)
            {
                return EptTranslationStatus.Misconfiguration; // the structure is not in machine memory (tables are page-aligned, so table < size covers the whole frame)
            }

            int shift = Page.PageShift + (9 * (level - 1));
            ulong* slot = (ulong*)(basePtr + table + (((gpa.Value >> shift) & 511) << 3));
            ulong entry = Volatile.Read(ref *slot);
            if ((entry & presentMask) == 0)
            {
                violation = MakeViolation(access, 0, linearFlags, modeBasedExecuteControl);
                return EptTranslationStatus.Violation;
            }

            bool leaf = level == 1 || (level <= 3 && (entry & EptEntry.LargePageBit) != 0);
            if (IsMisconfigured(entry, level, leaf))
            {
                return EptTranslationStatus.Misconfiguration;
            }

            rights &= entry;
            if (accessedDirty)
            {
                path[level - 1] = (ulong)slot;
                seen[level - 1] = entry;
            }

            if (!leaf)
            {
                table = entry & EptEntry.AddressMask;
                continue;
            }

            ulong needed = Needed(access, modeBasedExecuteControl);
            if ((rights & needed) != needed)
            {
                violation = MakeViolation(access, rights, linearFlags, modeBasedExecuteControl);
                return EptTranslationStatus.Violation;
            }

            if (accessedDirty && !SetAccessedDirty(path, seen, level, levels, (access & EptAccess.Write) != 0) && walks < MaxWalks)
            {
                // §29.3.5: the flags are set in the entries the translation uses. One changed since this walk read it
                // (an edit on another thread), so the walk's result is stale and its dirty flag would be lost: walk again.
                return WalkAgain(memory, eptp, gpa, access, linearFlags, modeBasedExecuteControl, walks + 1, out translation, out violation);
            }

            ulong offsetMask = (1UL << shift) - 1;
            ulong machine = (entry & EptEntry.AddressMask & ~offsetMask) | (gpa.Value & offsetMask);
            EptAccess granted = EptEntry.ToAccess(rights);
            if (!modeBasedExecuteControl)
            {
                granted &= ~EptAccess.UserExecute;
            }

            translation = new EptTranslation(
                machine,
                granted,
                (EptMemoryType)((entry & EptEntry.MemoryTypeMask) >> EptEntry.MemoryTypeShift),
                (entry & EptEntry.IgnorePatBit) != 0,
                level);
            return EptTranslationStatus.Success;
        }

        return EptTranslationStatus.Misconfiguration; // unreachable: level 1 is always a leaf
    }

    /// <summary>
    /// The EPT-misconfiguration conditions for a present entry (SDM Vol. 3C §29.3.3.1): write without read,
    /// reserved bits (51:N everywhere; 7:3 in PML4E/PML5E; 6:3 in a PDPTE or PDE that references a table;
    /// 29:12 or 20:12 in a 1 GiB or 2 MiB page), and memory types 2, 3 and 7 in a leaf.
    /// </summary>
    /// <param name="entry">The raw entry.</param>
    /// <param name="level">1 (PTE) to 5 (PML5E).</param>
    /// <param name="leaf">Whether the entry maps a page.</param>
    /// <returns>Whether hardware would report an EPT misconfiguration for this entry.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool IsMisconfigured(ulong entry, int level, bool leaf)
    {
        if ((entry & (EptEntry.ReadBit | EptEntry.WriteBit)) == EptEntry.WriteBit || (entry & EptEntry.ReservedHighMask) != 0)
        {
            return true;
        }

        if (!leaf)
        {
            ulong reserved = level >= 4 ? 0xF8UL : 0x78UL;
            return (entry & reserved) != 0;
        }

        if (level > 1 && (entry & (((1UL << (9 * (level - 1))) - 1) << Page.PageShift)) != 0)
        {
            return true; // address bits inside a large page must be 0
        }

        ulong memoryType = (entry & EptEntry.MemoryTypeMask) >> EptEntry.MemoryTypeShift;
        return memoryType is 2 or 3 or 7;
    }

    /// <summary>Classifies one entry as hardware would at <paramref name="level"/>: not present, misconfigured, or usable.</summary>
    /// <param name="entry">The entry.</param>
    /// <param name="level">1 (PTE), 2 (PDE), 3 (PDPTE), 4 (PML4E) or 5 (PML5E).</param>
    /// <param name="modeBasedExecuteControl">Whether bit 10 counts for presence.</param>
    /// <returns><see cref="EptTranslationStatus.Violation"/> when not present, <see cref="EptTranslationStatus.Misconfiguration"/> when present with an unsupported value, else <see cref="EptTranslationStatus.Success"/>.</returns>
    public static EptTranslationStatus Classify(EptEntry entry, int level, bool modeBasedExecuteControl = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(level, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(level, 5);
        if (!entry.IsPresentWith(modeBasedExecuteControl))
        {
            return EptTranslationStatus.Violation;
        }

        bool leaf = level == 1 || (level <= 3 && entry.IsLargePage);
        return IsMisconfigured(entry.Value, level, leaf) ? EptTranslationStatus.Misconfiguration : EptTranslationStatus.Success;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Needed(EptAccess access, bool modeBasedExecuteControl)
    {
        ulong needed = (ulong)access & (EptEntry.ReadBit | EptEntry.WriteBit | EptEntry.ExecuteBit);
        if ((access & EptAccess.UserExecute) != 0)
        {
            needed |= modeBasedExecuteControl ? EptEntry.UserExecuteBit : EptEntry.ExecuteBit;
        }

        return needed;
    }

    /// <summary>Bits 2:0 from the access, bits 6:3 from the walk's rights, bits 16:7 from the accessor (SDM §28.2.1, Table 28-7).</summary>
    private static EptViolationQualification MakeViolation(EptAccess access, ulong rights, EptViolationQualification linearFlags, bool modeBasedExecuteControl)
    {
        ulong q = (ulong)access & 3;
        if ((access & (EptAccess.Execute | EptAccess.UserExecute)) != 0)
        {
            q |= EptViolationQualification.InstructionFetchBit;
        }

        q |= (rights & EptEntry.PermissionMask) << 3;
        if (modeBasedExecuteControl && (rights & EptEntry.UserExecuteBit) != 0)
        {
            q |= EptViolationQualification.UserExecutableBit; // bit 6 is defined only under mode-based execute control
        }

        ulong linear = linearFlags.Value & EptViolationQualification.LinearFlagsMask & ~EptViolationQualification.SupervisorShadowStackBit;
        if ((linear & EptViolationQualification.GuestLinearAddressValidBit) == 0)
        {
            linear &= ~(EptViolationQualification.TranslatedAccessBit | 0xE00UL);
        }
        else if ((linear & EptViolationQualification.TranslatedAccessBit) == 0)
        {
            linear &= ~0xE00UL; // bits 11:9 are reported only for the translation of the linear address
        }

        return new EptViolationQualification(q | linear);
    }

    // §29.3.5: the flags go in the entries this walk used. path[i] is the slot of level i + 1, seen[i] what the walk read there.
    // False when an entry no longer holds what the walk read (flags aside): the walk must be made again.
    private static bool SetAccessedDirty(ulong* path, ulong* seen, int leafLevel, int levels, bool write)
    {
        for (int level = levels; level > leafLevel; level--)
        {
            if (!SetFlags((ulong*)path[level - 1], seen[level - 1], EptEntry.AccessedBit))
            {
                return false;
            }
        }

        return SetFlags((ulong*)path[leafLevel - 1], seen[leafLevel - 1], write ? EptEntry.AccessedBit | EptEntry.DirtyBit : EptEntry.AccessedBit);
    }

    /// <summary>
    /// Sets <paramref name="flags"/> (accessed, dirty) in <paramref name="slot"/> if it still holds the entry the walk
    /// read (<paramref name="seen"/>, the flags aside). An entry another thread changed meanwhile is left alone: its table
    /// may have been retired and zeroed, and a flag in a zeroed slot would make a non-zero entry that an edit of the
    /// reused table takes for a table at machine address 0.
    /// </summary>
    /// <returns>
    /// True when the slot holds the entry the walk read with the flags set; false when the entry changed, so that the walk
    /// that read it is not used (a write through it would be missing from the dirty log).
    /// </returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool SetFlags(ulong* slot, ulong seen, ulong flags)
    {
        const ulong flagBits = EptEntry.AccessedBit | EptEntry.DirtyBit;
        ulong current = Volatile.Read(ref *slot);
        while ((current & ~flagBits) == (seen & ~flagBits))
        {
            if ((current & flags) == flags)
            {
                return true;
            }

            ulong previous = Interlocked.CompareExchange(ref *slot, current | flags, current);
            if (previous == current)
            {
                return true;
            }

            current = previous; // another walk set a flag, or a harvest cleared one: try again on what is there now
        }

        return false;
    }
}
