namespace VmmKit.Vmx.Tests;

public class VmcsFieldTests
{
    [Fact]
    public void Contract_encodings_match_the_SDM()
    {
        Assert.Equal(0x0000u, (uint)VmcsField.VirtualProcessorIdentifier);
        Assert.Equal(0x0800u, (uint)VmcsField.GuestEsSelector);
        Assert.Equal(0x0802u, (uint)VmcsField.GuestCsSelector);
        Assert.Equal(0x080Eu, (uint)VmcsField.GuestTrSelector);
        Assert.Equal(0x0C00u, (uint)VmcsField.HostEsSelector);
        Assert.Equal(0x2000u, (uint)VmcsField.IoBitmapAAddress);
        Assert.Equal(0x2004u, (uint)VmcsField.MsrBitmapsAddress);
        Assert.Equal(0x201Au, (uint)VmcsField.EptPointer);
        Assert.Equal(0x2400u, (uint)VmcsField.GuestPhysicalAddress);
        Assert.Equal(0x2800u, (uint)VmcsField.VmcsLinkPointer);
        Assert.Equal(0x2806u, (uint)VmcsField.GuestIa32Efer);
        Assert.Equal(0x2C02u, (uint)VmcsField.HostIa32Efer);
        Assert.Equal(0x4000u, (uint)VmcsField.PinBasedVmExecutionControls);
        Assert.Equal(0x400Cu, (uint)VmcsField.VmExitControls);
        Assert.Equal(0x4016u, (uint)VmcsField.VmEntryInterruptionInformation);
        Assert.Equal(0x401Eu, (uint)VmcsField.SecondaryProcessorBasedVmExecutionControls);
        Assert.Equal(0x4400u, (uint)VmcsField.VmInstructionError);
        Assert.Equal(0x440Eu, (uint)VmcsField.VmExitInstructionInformation);
        Assert.Equal(0x4824u, (uint)VmcsField.GuestInterruptibilityState);
        Assert.Equal(0x482Eu, (uint)VmcsField.VmxPreemptionTimerValue);
        Assert.Equal(0x4C00u, (uint)VmcsField.HostIa32SysenterCs);
        Assert.Equal(0x6400u, (uint)VmcsField.ExitQualification);
        Assert.Equal(0x640Au, (uint)VmcsField.GuestLinearAddress);
        Assert.Equal(0x681Cu, (uint)VmcsField.GuestRsp);
        Assert.Equal(0x681Eu, (uint)VmcsField.GuestRip);
        Assert.Equal(0x6820u, (uint)VmcsField.GuestRflags);
        Assert.Equal(0x6C14u, (uint)VmcsField.HostRsp);
        Assert.Equal(0x6C16u, (uint)VmcsField.HostRip);
    }

    [Fact]
    public void Width_and_type_come_from_the_encoding_bits()
    {
        Assert.Equal(VmcsFieldWidth.Word, VmcsField.GuestCsSelector.Width());
        Assert.Equal(VmcsFieldType.GuestState, VmcsField.GuestCsSelector.Type());
        Assert.Equal(VmcsFieldWidth.Quadword, VmcsField.EptPointer.Width());
        Assert.Equal(VmcsFieldType.Control, VmcsField.EptPointer.Type());
        Assert.Equal(VmcsFieldWidth.Doubleword, VmcsField.ExitReason.Width());
        Assert.Equal(VmcsFieldType.VmExitInformation, VmcsField.ExitReason.Type());
        Assert.True(VmcsField.ExitReason.IsReadOnly());
        Assert.Equal(VmcsFieldWidth.Natural, VmcsField.HostRip.Width());
        Assert.Equal(VmcsFieldType.HostState, VmcsField.HostRip.Type());
        Assert.True(VmcsField.EptPointerHigh.IsHighAccess());
        Assert.Equal(VmcsField.EptPointer, VmcsField.EptPointerHigh.FullField());
        Assert.Equal(32, VmcsField.EptPointerHigh.SizeInBits());
        Assert.Equal(16, VmcsField.GuestCsSelector.SizeInBits());
        Assert.Equal(64, VmcsField.GuestRip.SizeInBits());
    }

    [Fact]
    public void Catalog_is_complete_consistent_and_named()
    {
        var all = VmcsFieldInfo.All.ToArray();
        Assert.Equal(all.Length, all.Distinct().Count());
        Assert.True(all.Length > 200);
        foreach (var f in all)
        {
            Assert.True(VmcsFieldInfo.IsWellFormed((uint)f), f.ToString());
            Assert.False(string.IsNullOrEmpty(f.SdmName()));
            Assert.True(f.IsDefined());
            // Every 64-bit field has its HIGH access listed, and only 64-bit fields have one.
            if (f.Width() == VmcsFieldWidth.Quadword && !f.IsHighAccess())
                Assert.Contains((VmcsField)((uint)f | 1), all);
            if (f.IsHighAccess())
                Assert.Equal(VmcsFieldWidth.Quadword, f.Width());
        }
        Assert.Equal("Guest CS selector", VmcsField.GuestCsSelector.SdmName());
        Assert.Null(((VmcsField)0x7FFE).SdmName());
        Assert.False(VmcsFieldInfo.IsWellFormed(0x0801)); // bit 0 only for 64-bit fields
        Assert.False(VmcsFieldInfo.IsWellFormed(0x1_0000));
    }

    [Fact]
    public void Vmcs_stores_every_field_without_aliasing()
    {
        var v = new Vmcs();
        var full = VmcsFieldInfo.All.ToArray().Where(f => !f.IsHighAccess()).ToArray();
        for (int i = 0; i < full.Length; i++)
            v.Write(full[i], 0x1111_1111_1111_1111ul * (ulong)(i % 15 + 1));
        for (int i = 0; i < full.Length; i++)
        {
            ulong expected = 0x1111_1111_1111_1111ul * (ulong)(i % 15 + 1);
            ulong mask = full[i].SizeInBits() == 64 ? ulong.MaxValue : (1ul << full[i].SizeInBits()) - 1;
            Assert.Equal(expected & mask, v.Read(full[i]));
        }
    }

    [Fact]
    public void High_access_aliases_the_upper_half_and_writes_truncate()
    {
        var v = new Vmcs();
        v.Write(VmcsField.EptPointer, 0x1234_5678_9ABC_DEF0);
        Assert.Equal(0x1234_5678ul, v.Read(VmcsField.EptPointerHigh));
        v.Write(VmcsField.EptPointerHigh, 0xAABB_CCDD_0000_0001);
        Assert.Equal(0x0000_0001_9ABC_DEF0ul, v.Read(VmcsField.EptPointer));
        v.Write(VmcsField.GuestCsSelector, 0x12345);
        Assert.Equal(0x2345ul, v.Read(VmcsField.GuestCsSelector));
        v.Write(VmcsField.GuestCsLimit, 0x1_FFFF_FFFF);
        Assert.Equal(0xFFFF_FFFFul, v.Read(VmcsField.GuestCsLimit));
        Assert.Equal(0x2345ul, v.Read(VmcsField.GuestCsSelector));
        Assert.False(v.TryWrite((VmcsField)0x0801, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => v.Read((VmcsField)0x8000_0000));
        var c = v.Clone();
        Assert.Equal(v.Read(VmcsField.EptPointer), c.Read(VmcsField.EptPointer));
        v.Clear();
        Assert.Equal(0ul, v.Read(VmcsField.EptPointer));
    }
}

public class VmcsAccessorTests
{
    [Fact]
    public void Typed_accessors_read_and_write_the_fields()
    {
        var v = new Vmcs
        {
            PrimaryProcessorBasedControls = PrimaryProcessorBasedControls.HltExiting,
            SecondaryProcessorBasedControls = SecondaryProcessorBasedControls.EnableEpt,
            GuestRip = 0x1000,
        };
        Assert.Equal((ulong)PrimaryProcessorBasedControls.HltExiting, v.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls));
        Assert.Equal(SecondaryProcessorBasedControls.None, v.EffectiveSecondaryControls);
        v.PrimaryProcessorBasedControls |= PrimaryProcessorBasedControls.ActivateSecondaryControls;
        Assert.Equal(SecondaryProcessorBasedControls.EnableEpt, v.EffectiveSecondaryControls);
        v.Write(VmcsField.VmExitInstructionLength, 2);
        v.SkipExitingInstruction();
        Assert.Equal(0x1002ul, v.GuestRip);
        v.VmEntryInterruption = InterruptionInformation.Create(14, InterruptionType.HardwareException, errorCodeValid: true);
        Assert.Equal(0x8000_0B0Eul, v.Read(VmcsField.VmEntryInterruptionInformation));
    }
}
