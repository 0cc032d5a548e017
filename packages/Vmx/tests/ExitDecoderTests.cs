namespace VmmKit.Vmx.Tests;

public class ExitDecoderTests
{
    [Fact]
    public void Control_register_access_qualification()
    {
        // mov cr3, rbx: CR 3, type 0, GPR 3 (SDM Table 28-3).
        var q = new ControlRegisterAccessQualification(0x303);
        Assert.Equal(3, q.ControlRegister);
        Assert.Equal(ControlRegisterAccessType.MovToCr, q.AccessType);
        Assert.Equal(3, q.GeneralPurposeRegister);
        Assert.Equal(q, ControlRegisterAccessQualification.MovCr(3, toCr: true, 3));
        // lmsw with memory operand, source 0x0011.
        var l = new ControlRegisterAccessQualification(0x0011_0070);
        Assert.Equal(ControlRegisterAccessType.Lmsw, l.AccessType);
        Assert.True(l.LmswOperandIsMemory);
        Assert.Equal(0x11, l.LmswSourceData);
        Assert.Equal(ControlRegisterAccessType.Clts, new ControlRegisterAccessQualification(0x20).AccessType);
    }

    [Fact]
    public void Mov_dr_and_io_qualifications()
    {
        var dr = new MovDrQualification(0x0517);
        Assert.Equal(7, dr.DebugRegister);
        Assert.True(dr.IsMovFromDr);
        Assert.Equal(5, dr.GeneralPurposeRegister);
        var io = new IoInstructionQualification(0x03F8_0039);
        Assert.Equal(2, io.Size);
        Assert.True(io.IsIn);
        Assert.True(io.IsString);
        Assert.True(io.IsRep);
        Assert.False(io.IsImmediate);
        Assert.Equal(0x3F8, io.Port);
        Assert.Equal(io, IoInstructionQualification.Create(0x3F8, 2, isIn: true, isString: true, isRep: true));
    }

    [Fact]
    public void Task_switch_debug_apic_and_instruction_information()
    {
        var ts = new TaskSwitchQualification(0xC000_0028);
        Assert.Equal(0x28, ts.TssSelector);
        Assert.Equal(TaskSwitchSource.TaskGateInIdt, ts.Source);
        var db = new DebugExceptionQualification(0x4002);
        Assert.True(db.SingleStep);
        Assert.Equal(2, db.BreakpointConditions);
        var apic = new ApicAccessQualification(0x1080);
        Assert.Equal(0x80, apic.Offset);
        Assert.Equal(ApicAccessType.LinearWrite, apic.AccessType);
        // VMREAD rax, rbx style: reg1 = 3, address size 64, register operand, reg2 = 0.
        var info = new VmxInstructionInformation((3u << 3) | (2u << 7) | (1u << 10));
        Assert.Equal(3, info.Register1);
        Assert.Equal(2, info.AddressSize);
        Assert.True(info.IsRegisterOperand);
        var mem = new VmxInstructionInformation((2u << 0) | (3u << 15) | (1u << 18) | (5u << 23) | (7u << 28));
        Assert.Equal(2, mem.Scaling);
        Assert.Equal(3, mem.SegmentRegister);
        Assert.Equal(1, mem.IndexRegister);
        Assert.Equal(5, mem.BaseRegister);
        Assert.Equal(7, mem.Register2);
        Assert.False(mem.IndexRegisterInvalid);
    }

    [Fact]
    public void Interruption_information_round_trips()
    {
        var gp = InterruptionInformation.Create(13, InterruptionType.HardwareException, errorCodeValid: true);
        Assert.Equal(0x8000_0B0Du, gp.Value);
        Assert.True(gp.IsValid);
        Assert.Equal(13, gp.Vector);
        Assert.Equal(InterruptionType.HardwareException, gp.Type);
        Assert.True(gp.ErrorCodeValid);
        Assert.False(gp.HasReservedEntryBits);
        Assert.True(new InterruptionInformation(0x8010_0000).HasReservedEntryBits);
    }

    [Fact]
    public void VmExit_round_trips_through_the_vmcs()
    {
        var v = new Vmcs();
        var exit = VmExit.Exit(VmxExitReason.EptViolation, 0x181) with { GuestPhysicalAddress = 0x80_0000, GuestLinearAddress = 0x80_0000, InstructionLength = 5 };
        exit.WriteTo(v);
        var back = VmExit.ReadFrom(v);
        Assert.Equal(exit, back);
        Assert.Equal(VmxExitReason.EptViolation, back.Reason);
        Assert.True(back.EptViolation.WasRead);
        Assert.True(back.EptViolation.GuestLinearAddressValid);

        var fail = VmExit.EntryFailure(VmxExitReason.EntryFailureInvalidGuestState, (ulong)EntryFailureQualification.InvalidVmcsLinkPointer);
        Assert.True(fail.IsEntryFailure);
        Assert.Equal(VmExitOutcome.EntryFailure, fail.Outcome);
        Assert.Equal(0x8000_0021u, fail.RawExitReason);
        Assert.Equal(EntryFailureQualification.InvalidVmcsLinkPointer, fail.EntryFailureQualification);

        var vmfail = VmExit.VmFailValid(VmInstructionError.VmEntryWithInvalidHostStateFields);
        vmfail.WriteTo(v);
        Assert.Equal(8ul, v.Read(VmcsField.VmInstructionError));
        Assert.Equal(VmInstructionError.None, back.Error);
    }

    [Fact]
    public void Guest_registers_index_by_encoding()
    {
        var r = new GuestRegisters();
        r[3] = 0x1234;
        r[15] = 7;
        r[4] = 99; // RSP lives in the VMCS
        Assert.Equal(0x1234ul, r.Rbx);
        Assert.Equal(7ul, r.R15);
        Assert.Equal(0ul, r[4]);
    }
}
