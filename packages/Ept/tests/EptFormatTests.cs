using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>Every field of EPT entries, the EPTP and the violation qualification at the bit positions the SDM gives.</summary>
public sealed class EptFormatTests
{
    [Theory]
    [InlineData(0, "Readable")]
    [InlineData(1, "Writable")]
    [InlineData(2, "Executable")]
    [InlineData(6, "IgnorePat")]
    [InlineData(7, "IsLargePage")]
    [InlineData(8, "Accessed")]
    [InlineData(9, "Dirty")]
    [InlineData(10, "UserExecutable")]
    [InlineData(63, "SuppressVe")]
    public void Entry_flag_bits_are_where_the_SDM_puts_them(int bit, string flag)
    {
        // SDM Vol. 3C §29.3.2, Tables 29-1..29-6.
        var entry = new EptEntry(1UL << bit);
        var flags = new Dictionary<string, bool>
        {
            ["Readable"] = entry.Readable,
            ["Writable"] = entry.Writable,
            ["Executable"] = entry.Executable,
            ["IgnorePat"] = entry.IgnorePat,
            ["IsLargePage"] = entry.IsLargePage,
            ["Accessed"] = entry.Accessed,
            ["Dirty"] = entry.Dirty,
            ["UserExecutable"] = entry.UserExecutable,
            ["SuppressVe"] = entry.SuppressVe,
        };
        foreach ((string name, bool value) in flags)
        {
            Assert.Equal(name == flag, value);
        }

        Assert.Equal(bit <= 2, entry.IsPresent);
    }

    [Fact]
    public void Entry_builders_set_exactly_their_bits()
    {
        var zero = new EptEntry(0);
        Assert.Equal(1UL << 6, zero.WithIgnorePat(true).Value);
        Assert.Equal(1UL << 7, zero.WithLargePage(true).Value);
        Assert.Equal(1UL << 8, zero.WithAccessed(true).Value);
        Assert.Equal(1UL << 9, zero.WithDirty(true).Value);
        Assert.Equal(1UL << 63, zero.WithSuppressVe(true).Value);
        Assert.Equal(0x407UL, zero.WithAccess(EptAccess.All).Value);
        Assert.Equal(0x1UL, zero.WithAccess(EptAccess.All).WithAccess(EptAccess.Read).Value);
        EptEntry cleared = new EptEntry(ulong.MaxValue).WithIgnorePat(false).WithLargePage(false).WithAccessed(false).WithDirty(false)
            .WithSuppressVe(false).WithAccess(EptAccess.None).WithMemoryType(0).WithFrame(default);
        Assert.Equal((1UL << 11) | (((1UL << 63) - 1) & ~((1UL << 46) - 1)), cleared.Value); // only ignored bit 11 and bits 62:46 remain
    }

    [Theory]
    [InlineData(EptMemoryType.Uncacheable, 0UL)]
    [InlineData(EptMemoryType.WriteCombining, 1UL << 3)]
    [InlineData(EptMemoryType.WriteThrough, 4UL << 3)]
    [InlineData(EptMemoryType.WriteProtected, 5UL << 3)]
    [InlineData(EptMemoryType.WriteBack, 6UL << 3)]
    public void Memory_type_is_bits_5_to_3(EptMemoryType type, ulong raw)
    {
        Assert.Equal(raw, new EptEntry(0).WithMemoryType(type).Value);
        Assert.Equal(type, new EptEntry(raw | 0x7).MemoryType);
    }

    [Fact]
    public void Address_is_bits_N_minus_1_to_12()
    {
        Assert.Equal(46, EptEntry.PhysicalAddressWidth);
        Assert.Equal(0x0000_3FFF_FFFF_F000UL, EptEntry.AddressMask);
        Assert.Equal(0x000F_C000_0000_0000UL, EptEntry.ReservedHighMask);
        var e = EptEntry.ForPage(new MachineFrameNumber(0x12345), EptAccess.Read, EptMemoryType.WriteBack);
        Assert.Equal(0x12345000UL | 1 | (6 << 3), e.Value);
        Assert.Equal(new MachineFrameNumber(0x12345), e.Frame);
        Assert.Equal(0x12345000UL, e.Address);
        Assert.Equal(new MachineFrameNumber(0x3FFFFFFFF), new EptEntry(ulong.MaxValue).Frame);
        var large = EptEntry.ForPage(new MachineFrameNumber(512), EptAccess.ReadWriteExecute, EptMemoryType.Uncacheable, largePage: true);
        Assert.Equal(0x200000UL | 0x80 | 0x7, large.Value);
        Assert.Equal(0x1000UL | 0x407, EptEntry.ForTable(new MachineFrameNumber(1)).Value);
    }

    [Fact]
    public void Access_round_trips_through_bits_0_1_2_and_10()
    {
        for (int a = 0; a < 16; a++)
        {
            var access = (EptAccess)a;
            EptEntry e = new EptEntry(0).WithAccess(access);
            Assert.Equal(access, e.Access);
            Assert.Equal(((ulong)a & 7) | (((ulong)a & 8) << 7), e.Value);
            Assert.Equal((a & 7) != 0, e.IsPresent);
            Assert.Equal(a != 0, e.IsPresentWith(modeBasedExecuteControl: true));
        }
    }

    [Fact]
    public void Eptp_fields_follow_the_SDM()
    {
        // SDM Vol. 3C §25.6.11: 2:0 memory type, 5:3 walk length - 1, 6 A/D enable, 7 supervisor shadow stack, N-1:12 root.
        EptPointer p = EptPointer.Create(new MachineFrameNumber(0xABCDE), accessedDirtyEnabled: true);
        Assert.Equal(0xABCDE000UL | 6 | (3 << 3) | (1 << 6), p.Value);
        Assert.Equal(EptMemoryType.WriteBack, p.MemoryType);
        Assert.Equal(4, p.PageWalkLength);
        Assert.True(p.AccessedDirtyEnabled);
        Assert.False(p.SupervisorShadowStackEnabled);
        Assert.True(new EptPointer(1UL << 7 | 0x1E).SupervisorShadowStackEnabled);
        Assert.Equal(new MachineFrameNumber(0xABCDE), p.Root);
        Assert.True(p.IsValid);
        Assert.Equal(0x1000UL | (4 << 3), EptPointer.Create(new MachineFrameNumber(1), memoryType: EptMemoryType.Uncacheable, pageWalkLength: 5).Value);
        Assert.True(EptPointer.Create(new MachineFrameNumber(1), memoryType: EptMemoryType.Uncacheable, pageWalkLength: 5).IsValid);

        Assert.False(new EptPointer(p.Value & ~7UL | 1).IsValid);            // WC is not allowed for the paging structures
        Assert.False(new EptPointer(p.Value & ~0x38UL | (2 << 3)).IsValid);  // 3-level walk
        Assert.False(new EptPointer(p.Value | (1UL << 8)).IsValid);          // reserved 11:8
        Assert.False(new EptPointer(p.Value | (1UL << 46)).IsValid);         // reserved 63:N
    }

    [Theory]
    [InlineData(0, "WasRead")]
    [InlineData(1, "WasWrite")]
    [InlineData(2, "WasInstructionFetch")]
    [InlineData(3, "Readable")]
    [InlineData(4, "Writable")]
    [InlineData(5, "Executable")]
    [InlineData(6, "UserExecutable")]
    [InlineData(7, "GuestLinearAddressValid")]
    [InlineData(8, "IsTranslationOfLinearAddress")]
    [InlineData(9, "IsUserModeLinearAddress")]
    [InlineData(10, "IsWritableLinearAddress")]
    [InlineData(11, "IsExecuteDisableLinearAddress")]
    [InlineData(12, "NmiUnblocking")]
    [InlineData(13, "IsShadowStackAccess")]
    [InlineData(16, "IsAsynchronous")]
    public void Qualification_bits_follow_table_28_7(int bit, string flag)
    {
        var q = new EptViolationQualification(1UL << bit);
        var flags = new Dictionary<string, bool>
        {
            ["WasRead"] = q.WasRead,
            ["WasWrite"] = q.WasWrite,
            ["WasInstructionFetch"] = q.WasInstructionFetch,
            ["Readable"] = q.Readable,
            ["Writable"] = q.Writable,
            ["Executable"] = q.Executable,
            ["UserExecutable"] = q.UserExecutable,
            ["GuestLinearAddressValid"] = q.GuestLinearAddressValid,
            ["IsTranslationOfLinearAddress"] = q.IsTranslationOfLinearAddress,
            ["IsUserModeLinearAddress"] = q.IsUserModeLinearAddress,
            ["IsWritableLinearAddress"] = q.IsWritableLinearAddress,
            ["IsExecuteDisableLinearAddress"] = q.IsExecuteDisableLinearAddress,
            ["NmiUnblocking"] = q.NmiUnblocking,
            ["IsShadowStackAccess"] = q.IsShadowStackAccess,
            ["IsAsynchronous"] = q.IsAsynchronous,
        };
        foreach ((string name, bool value) in flags)
        {
            Assert.Equal(name == flag, value);
        }
    }

    [Fact]
    public void Linear_flags_builder()
    {
        Assert.Equal(0x80UL, EptViolationQualification.ForLinearAddress(false, userMode: true, writable: true, executeDisable: true).Value);
        Assert.Equal(0x180UL, EptViolationQualification.ForLinearAddress(true).Value);
        Assert.Equal(0xF80UL, EptViolationQualification.ForLinearAddress(true, true, true, true).Value);
        Assert.Equal(0x1F80UL, EptViolationQualification.ForLinearAddress(true, true, true, true).WithNmiUnblocking(true).Value);
        Assert.Equal(EptAccess.Read | EptAccess.Execute, new EptViolationQualification(0x28).Permissions);
    }

    [Fact]
    public void Address_types()
    {
        var gpa = new GuestPhysicalAddress(0x12345);
        Assert.Equal(new GuestFrameNumber(0x12), gpa.FrameNumber);
        Assert.Equal(0x345, gpa.PageOffset);
        Assert.False(gpa.IsPageAligned);
        Assert.True(gpa.AlignDown().IsPageAligned);
        Assert.Equal(new GuestPhysicalAddress(0x12000), new GuestFrameNumber(0x12).Address);
        Assert.Equal(0x12000UL, new MachineFrameNumber(0x12).Address);
        Assert.Equal(new GuestPhysicalAddress(0x12346), gpa + 1);
        Assert.Equal(0x45UL, gpa - new GuestPhysicalAddress(0x12300));
        Assert.False(new GuestPhysicalAddress(ulong.MaxValue).TryAdd(1, out _));
        Assert.True(gpa.TryAdd(1, out GuestPhysicalAddress next));
        Assert.Equal(gpa + 1, next);
        Assert.Throws<OverflowException>(() => new GuestPhysicalAddress(ulong.MaxValue).CheckedAdd(1));
        Assert.Equal(4096, Page.PageSize);
        Assert.Equal(12, Page.PageShift);
        Assert.Equal("gpa:0x12345", gpa.ToString());
    }
}
