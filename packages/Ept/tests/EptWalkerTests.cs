using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>The walker against raw tables: misconfigurations (SDM §29.3.3.1), violations and their qualifications (§28.2.1), A/D (§29.3.5).</summary>
public sealed class EptWalkerTests
{
    private const ulong Wb = 6UL << 3;

    [Fact]
    public void Raw_tables_translate_4k()
    {
        using var ept = new RawEpt();
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(0xABC, EptAccess.Read | EptAccess.Write | EptAccess.Execute, out EptTranslation t, out _));
        Assert.Equal(ept.Data.Address + 0xABC, t.MachineAddress);
        Assert.Equal(EptAccess.ReadWriteExecute, t.Permissions);
        Assert.Equal(1, t.PageLevel);
    }

    [Theory]
    [InlineData(2)] // W only
    [InlineData(6)] // W + X without R
    public void Write_without_read_is_a_misconfiguration_at_every_level(ulong rights)
    {
        for (int level = 1; level <= 4; level++)
        {
            using var ept = new RawEpt();
            ept.Set(level, (ept.Get(level) & ~7UL) | rights);
            Assert.Equal(EptTranslationStatus.Misconfiguration, ept.Translate(0, EptAccess.Read, out _, out _));
        }
    }

    [Fact]
    public void Reserved_bits_51_to_N_are_misconfigurations_at_every_level()
    {
        for (int level = 1; level <= 4; level++)
        {
            for (int bit = EptEntry.PhysicalAddressWidth; bit <= 51; bit++)
            {
                using var ept = new RawEpt();
                ept.Set(level, ept.Get(level) | (1UL << bit));
                Assert.Equal(EptTranslationStatus.Misconfiguration, ept.Translate(0, EptAccess.Read, out _, out _));
            }
        }
    }

    [Theory]
    [InlineData(4, 3, 7)] // PML4E: bits 7:3 reserved (Table 29-1)
    [InlineData(3, 3, 6)] // PDPTE referencing a PD: bits 6:3 reserved, bit 7 selects a 1 GiB page (Table 29-3)
    [InlineData(2, 3, 6)] // PDE referencing a PT: bits 6:3 reserved (Table 29-5)
    public void Reserved_bits_of_non_leaf_entries_are_misconfigurations(int level, int low, int high)
    {
        for (int bit = low; bit <= high; bit++)
        {
            using var ept = new RawEpt();
            ept.Set(level, ept.Get(level) | (1UL << bit));
            Assert.Equal(EptTranslationStatus.Misconfiguration, ept.Translate(0, EptAccess.Read, out _, out _));
        }
    }

    [Theory]
    [InlineData(2, 12, 20)] // 2 MiB page: bits 20:12 reserved (Table 29-4)
    [InlineData(3, 12, 29)] // 1 GiB page: bits 29:12 reserved (Table 29-2)
    public void Reserved_address_bits_of_large_pages_are_misconfigurations(int level, int low, int high)
    {
        using var ok = new RawEpt(2UL << 30);
        ok.Set(level, 0x87 | Wb);
        Assert.Equal(EptTranslationStatus.Success, ok.Translate(0x1234, EptAccess.Read, out EptTranslation t, out _));
        Assert.Equal(level, t.PageLevel);
        Assert.Equal(0x1234UL, t.MachineAddress);
        for (int bit = low; bit <= high; bit++)
        {
            ok.Set(level, 0x87 | Wb | (1UL << bit));
            Assert.Equal(EptTranslationStatus.Misconfiguration, ok.Translate(0x1234, EptAccess.Read, out _, out _));
        }
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(1, true)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(4, true)]
    [InlineData(5, true)]
    [InlineData(6, true)]
    [InlineData(7, false)]
    public void Leaf_memory_types_2_3_7_are_misconfigurations(ulong type, bool valid)
    {
        for (int level = 1; level <= 3; level++)
        {
            using var ept = new RawEpt(2UL << 30);
            ulong leaf = level == 1 ? ept.Data.Address : 0x80;
            ept.Set(level, leaf | 0x7 | (type << 3));
            EptTranslationStatus status = ept.Translate(0, EptAccess.Read, out EptTranslation t, out _);
            Assert.Equal(valid ? EptTranslationStatus.Success : EptTranslationStatus.Misconfiguration, status);
            if (valid)
            {
                Assert.Equal((EptMemoryType)type, t.MemoryType);
            }
        }
    }

    [Fact]
    public void Ignored_bits_do_not_change_the_walk()
    {
        // Bit 11 and 62:52 are ignored everywhere; 8/9/10 and bit 63 in non-leaf entries; bit 7 in a PTE; bit 10 without MBEC.
        ulong ignored = (1UL << 11) | (0x7FFUL << 52);
        using var ept = new RawEpt();
        for (int level = 1; level <= 4; level++)
        {
            ept.Set(level, ept.Get(level) | ignored | (1UL << 10) | (level > 1 ? (1UL << 8) | (1UL << 9) | (1UL << 63) : 0));
        }

        ept.Set(1, ept.Get(1) | (1UL << 7) | (1UL << 6) | (1UL << 63));
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(0x10, EptAccess.Write, out EptTranslation t, out _));
        Assert.Equal(ept.Data.Address + 0x10, t.MachineAddress);
        Assert.True(t.IgnorePat);
        Assert.Equal(EptAccess.ReadWriteExecute, t.Permissions);
    }

    [Fact]
    public void A_not_present_entry_ignores_its_other_bits()
    {
        for (int level = 1; level <= 4; level++)
        {
            using var ept = new RawEpt();
            ept.Set(level, ~7UL & ~(1UL << 10)); // bits 63:3 set, including reserved ones: still merely not present
            Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.Read, out _, out EptViolationQualification q));
            Assert.Equal(EptViolationQualification.DataReadBit, q.Value);
        }
    }

    [Fact]
    public void Qualification_for_every_leaf_permission_and_access()
    {
        (EptAccess access, ulong bit)[] accesses = [(EptAccess.Read, 1), (EptAccess.Write, 2), (EptAccess.Execute, 4)];
        for (ulong rights = 0; rights < 8; rights++)
        {
            if ((rights & 3) == 2)
            {
                continue; // W without R: misconfiguration, tested above
            }

            using var ept = new RawEpt();
            ept.Set(1, ept.Data.Address | Wb | rights);
            foreach ((EptAccess access, ulong bit) in accesses)
            {
                EptTranslationStatus status = ept.Translate(0x42, access, out EptTranslation t, out EptViolationQualification q);
                if ((rights & bit) != 0)
                {
                    Assert.Equal(EptTranslationStatus.Success, status);
                    Assert.Equal((EptAccess)rights, t.Permissions);
                }
                else
                {
                    Assert.Equal(EptTranslationStatus.Violation, status);
                    Assert.Equal(bit | (rights << 3), q.Value); // bits 5:3 are the entry's R/W/X, 0 when not present
                }
            }
        }
    }

    [Fact]
    public void Qualification_rights_are_the_AND_of_all_levels()
    {
        for (int level = 2; level <= 4; level++)
        {
            using var ept = new RawEpt();
            ept.Set(level, (ept.Get(level) & ~7UL) | 0x5); // R + X above, RWX leaf
            Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.Write, out _, out EptViolationQualification q));
            Assert.Equal(EptViolationQualification.DataWriteBit | EptViolationQualification.ReadableBit | EptViolationQualification.ExecutableBit, q.Value);
            Assert.Equal(EptTranslationStatus.Success, ept.Translate(0, EptAccess.Read | EptAccess.Execute, out EptTranslation t, out _));
            Assert.Equal(EptAccess.Read | EptAccess.Execute, t.Permissions);
        }
    }

    [Fact]
    public void Read_modify_write_reports_both_access_bits()
    {
        using var ept = new RawEpt();
        ept.Set(1, ept.Data.Address | Wb | 1);
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.Read | EptAccess.Write, out _, out EptViolationQualification q));
        Assert.Equal(0x3UL | 0x8, q.Value);
    }

    [Fact]
    public void Mode_based_execute_control_uses_bit_10_for_user_fetches_and_reports_bit_6()
    {
        using var ept = new RawEpt();
        for (int level = 2; level <= 4; level++)
        {
            ept.Set(level, ept.Get(level) | (1UL << 10)); // non-leaf entries must grant user-execute too (the rights are ANDed)
        }

        ept.Set(1, ept.Data.Address | Wb | (1UL << 10)); // user-execute only
        // Without MBEC the entry is not present.
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.UserExecute, out _, out EptViolationQualification q));
        Assert.Equal(EptViolationQualification.InstructionFetchBit, q.Value);
        // With MBEC it is present and allows user-mode fetches only.
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(0, EptAccess.UserExecute, out EptTranslation t, out _, mbec: true));
        Assert.Equal(EptAccess.UserExecute, t.Permissions);
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.Execute, out _, out q, mbec: true));
        Assert.Equal(EptViolationQualification.InstructionFetchBit | EptViolationQualification.UserExecutableBit, q.Value);

        ept.Set(1, ept.Data.Address | Wb | 0x5); // R + supervisor X
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.UserExecute, out _, out q, mbec: true));
        Assert.Equal(0x4UL | 0x8 | 0x20, q.Value);
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(0, EptAccess.UserExecute, out _, out _)); // without MBEC bit 2 covers all fetches

        ept.Set(3, ept.Get(3) & ~(1UL << 10)); // a PDPTE without user-execute denies user fetches below it
        ept.Set(1, ept.Data.Address | Wb | 0x405);
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.UserExecute, out _, out q, mbec: true));
        Assert.Equal(0x4UL | 0x8 | 0x20, q.Value);
    }

    [Fact]
    public void Execute_only_pages_are_supported()
    {
        using var ept = new RawEpt();
        ept.Set(1, ept.Data.Address | Wb | 0x4);
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(0, EptAccess.Execute, out _, out _));
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.Read, out _, out EptViolationQualification q));
        Assert.Equal(0x1UL | 0x20, q.Value);
    }

    [Fact]
    public void Linear_address_flags_and_nmi_unblocking_are_passed_through()
    {
        using var ept = new RawEpt();
        ept.Set(1, ept.Data.Address | Wb | 0x1);
        EptViolationQualification linear = EptViolationQualification.ForLinearAddress(true, userMode: true, writable: true, executeDisable: false).WithNmiUnblocking(true);
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.Write, out _, out EptViolationQualification q, linear: linear));
        Assert.Equal(0x2UL | 0x8 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000, q.Value);

        // A guest paging-structure access (bit 8 = 0) reports no linear-translation details in bits 11:9.
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.Write, out _, out q, linear: new EptViolationQualification(0x80 | 0xE00)));
        Assert.Equal(0x2UL | 0x8 | 0x80, q.Value);

        // Without bit 7, bits 11:8 are not reported; bits 63:17 never come from the caller; bits 2:0 never do either.
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(0, EptAccess.Write, out _, out q, linear: new EptViolationQualification(~0x80UL)));
        Assert.Equal(0x2UL | 0x8 | 0x1000 | 0x2000 | 0x8000 | 0x10000, q.Value);
    }

    [Fact]
    public void Accessed_and_dirty_flags_are_set_only_when_the_eptp_enables_them()
    {
        using var ept = new RawEpt();
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(0, EptAccess.Write, out _, out _));
        for (int level = 1; level <= 4; level++)
        {
            Assert.Equal(0UL, ept.Get(level) & 0x300);
        }

        Assert.Equal(EptTranslationStatus.Success, ept.Translate(0, EptAccess.Read, out _, out _, accessedDirty: true));
        for (int level = 1; level <= 4; level++)
        {
            Assert.Equal(0x100UL, ept.Get(level) & 0x300);
        }

        Assert.Equal(EptTranslationStatus.Success, ept.Translate(0, EptAccess.Write, out _, out _, accessedDirty: true));
        Assert.Equal(0x300UL, ept.Get(1) & 0x300);
        for (int level = 2; level <= 4; level++)
        {
            Assert.Equal(0x100UL, ept.Get(level) & 0x300); // dirty only in the leaf
        }

        // A 2 MiB leaf gets the dirty flag itself.
        using var large = new RawEpt();
        large.Set(2, large.Data.Address | 0x87 | Wb);
        Assert.Equal(EptTranslationStatus.Success, large.Translate(0x1000, EptAccess.Write, out _, out _, accessedDirty: true));
        Assert.Equal(0x300UL, large.Get(2) & 0x300);
        Assert.Equal(0x100UL, large.Get(3) & 0x300);

        // No flags are set by a walk that ends in a violation.
        using var denied = new RawEpt();
        denied.Set(1, denied.Data.Address | Wb | 0x1);
        Assert.Equal(EptTranslationStatus.Violation, denied.Translate(0, EptAccess.Write, out _, out _, accessedDirty: true));
        Assert.Equal(0UL, denied.Get(1) & 0x300);
    }

    [Fact]
    public void Invalid_eptp_tables_outside_memory_and_wide_addresses_fail_cleanly()
    {
        using var ept = new RawEpt();
        EptPointer bad = new(ept.Pointer().Value | (1UL << 8));
        Assert.Equal(EptTranslationStatus.Misconfiguration, EptWalker.Translate(ept.Memory, bad, default, EptAccess.Read, default, out _, out _));

        EptPointer outside = EptPointer.Create(new MachineFrameNumber(ept.Memory.FrameCount + 5));
        Assert.Equal(EptTranslationStatus.Misconfiguration, EptWalker.Translate(ept.Memory, outside, default, EptAccess.Read, default, out _, out _));

        ept.Set(3, (ept.Memory.FrameCount << 12) | 0x7); // PDPTE pointing past the end of machine memory
        Assert.Equal(EptTranslationStatus.Misconfiguration, ept.Translate(0, EptAccess.Read, out _, out _));

        // A guest-physical address above bit 47 cannot be walked with 4 levels: violation, nothing granted.
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(1UL << 48, EptAccess.Read, out _, out EptViolationQualification q));
        Assert.Equal(EptViolationQualification.DataReadBit, q.Value);
    }

    [Fact]
    public void Five_level_walk()
    {
        using var ept = new RawEpt();
        MachineFrameNumber pml5 = ept.Memory.AllocateFrame(FrameOwner.Hypervisor);
        ept.Memory.GetFrame(pml5)[8] = 0; // keep entry 1 empty
        BitConverter.TryWriteBytes(ept.Memory.GetFrame(pml5), ept.Tables[4].Address | 0x7);
        EptPointer eptp = EptPointer.Create(pml5, pageWalkLength: 5);
        Assert.Equal(EptTranslationStatus.Success, EptWalker.Translate(ept.Memory, eptp, new GuestPhysicalAddress(0x20), EptAccess.Read, default, out EptTranslation t, out _));
        Assert.Equal(ept.Data.Address + 0x20, t.MachineAddress);
        Assert.Equal(EptTranslationStatus.Violation, EptWalker.Translate(ept.Memory, eptp, new GuestPhysicalAddress(1UL << 48), EptAccess.Read, default, out _, out _));
        Assert.Equal(EptTranslationStatus.Violation, EptWalker.Translate(ept.Memory, eptp, new GuestPhysicalAddress(1UL << 57), EptAccess.Read, default, out _, out _));
    }

    [Fact]
    public void Classify_matches_the_walk()
    {
        Assert.Equal(EptTranslationStatus.Violation, EptWalker.Classify(new EptEntry(0xFF8), 1));
        Assert.Equal(EptTranslationStatus.Misconfiguration, EptWalker.Classify(new EptEntry(0x2), 1));
        Assert.Equal(EptTranslationStatus.Misconfiguration, EptWalker.Classify(new EptEntry(0x1 | (2 << 3)), 1));
        Assert.Equal(EptTranslationStatus.Success, EptWalker.Classify(new EptEntry(0x1 | (6 << 3)), 1));
        Assert.Equal(EptTranslationStatus.Misconfiguration, EptWalker.Classify(new EptEntry(0x87), 4));
        Assert.Equal(EptTranslationStatus.Success, EptWalker.Classify(new EptEntry(0x40000087), 3));
        Assert.Equal(EptTranslationStatus.Misconfiguration, EptWalker.Classify(new EptEntry(0x40001087), 3));
        Assert.Equal(EptTranslationStatus.Success, EptWalker.Classify(new EptEntry(0x400), 1, modeBasedExecuteControl: true));
    }
}
