using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

public unsafe class EmulatedProcessorTests
{
    private const ulong RamPages = 256; // 1 MiB guest RAM at guest-physical 0

    private sealed class Guest : IDisposable
    {
        public readonly MachineMemory Memory = new(16UL << 20);
        public readonly EptTables Ept;
        public readonly MachineFrameNumber First;
        public readonly Vmcs Vmcs = new();
        public readonly EmulatedProcessor Cpu;

        public Guest(int bitness, Action<Assembler> code, ulong entry = 0x1000)
        {
            Ept = new EptTables(Memory, new FrameOwner(1));
            First = Memory.AllocateContiguous(new FrameOwner(1), RamPages);
            Ept.Map(new GuestPhysicalAddress(0), First, RamPages, EptAccess.Read | EptAccess.Write | EptAccess.Execute);
            var a = new Assembler(bitness);
            code(a);
            var w = new Writer();
            a.Assemble(w, entry);
            Write(entry, w.Bytes.ToArray());
            Cpu = new EmulatedProcessor(Memory);
            if (bitness == 64)
            {
                // Identity-map the first 2 MiB with one large page: PML4 0x10000, PDPT 0x11000, PD 0x12000.
                Write(0x10000, BitConverter.GetBytes(0x11000UL | 3));
                Write(0x11000, BitConverter.GetBytes(0x12000UL | 3));
                Write(0x12000, BitConverter.GetBytes(0x83UL));
                VmcsBuilder.SetLongModeGuest(Vmcs, EmulatedCapabilities.Create(), Ept.Pointer, 0x10000, entry, 0x80000);
            }
            else
            {
                VmcsBuilder.SetPvh32Guest(Vmcs, EmulatedCapabilities.Create(), Ept.Pointer, (uint)entry);
            }
            VmcsBuilder.SetHostState(Vmcs, EmulatedHostState.Default);
        }

        public void Write(ulong gpa, ReadOnlySpan<byte> bytes)
        {
            byte* host = Memory.GetFramePointer(First) + gpa;
            bytes.CopyTo(new Span<byte>(host, bytes.Length));
        }

        public void Advance(VmExit exit) => Vmcs.Write(VmcsField.GuestRip, Vmcs.Read(VmcsField.GuestRip) + exit.InstructionLength);

        public void Dispose()
        {
            Cpu.Dispose();
            Ept.Dispose();
            Memory.Dispose();
        }
    }

    private sealed class Writer : CodeWriter
    {
        public readonly List<byte> Bytes = new();

        public override void WriteByte(byte value) => Bytes.Add(value);
    }

    [Fact]
    public void Pvh32_guest_exits_on_io_cpuid_and_hlt()
    {
        using var g = new Guest(32, a =>
        {
            a.mov(eax, 0x41);
            a.@out(0xE9, al);
            a.mov(eax, 0);
            a.cpuid();
            a.mov(ebx, 7);
            a.hlt();
        });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.IoInstruction, e.Reason);
        Assert.Equal(0xE9, e.IoInstruction.Port);
        Assert.Equal(0x41UL, g.Cpu.Registers.Rax);
        Assert.Equal(2u, e.InstructionLength);
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Cpuid, e.Reason);
        g.Cpu.Registers.Rax = 0x1234;
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(7UL, g.Cpu.Registers.Rbx);
        Assert.Equal(0x1234UL, g.Cpu.Registers.Rax);
        Assert.Equal(3UL, g.Cpu.InstructionsRetired); // instructions that exit are not retired (the hypervisor completes them)
        Assert.Equal(VmxExitReason.Hlt, VmExit.ReadFrom(g.Vmcs).Reason);
    }

    [Fact]
    public void Access_outside_the_ept_is_an_ept_violation_with_addresses()
    {
        using var g = new Guest(32, a =>
        {
            a.mov(eax, __dword_ptr[0x200010]);
            a.hlt();
        });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.EptViolation, e.Reason);
        Assert.Equal(0x200010UL, e.GuestPhysicalAddress);
        Assert.Equal(0x200010UL, e.GuestLinearAddress);
        Assert.True(e.EptViolation.WasRead);
        Assert.True(e.EptViolation.GuestLinearAddressValid);
        Assert.Equal(0x1000UL, g.Vmcs.Read(VmcsField.GuestRip));
    }

    [Fact]
    public void Fault_without_idt_is_a_triple_fault()
    {
        using var g = new Guest(32, a =>
        {
            a.ud2();
        });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.TripleFault, e.Reason);
    }

    [Fact]
    public void Exception_in_the_bitmap_exits_with_interruption_information()
    {
        using var g = new Guest(32, a =>
        {
            a.xor(ecx, ecx);
            a.div(ecx);
        });
        g.Vmcs.Write(VmcsField.ExceptionBitmap, 1u << 0);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ExceptionOrNmi, e.Reason);
        Assert.Equal(0, e.ExitInterruption.Vector);
        Assert.Equal(InterruptionType.HardwareException, e.ExitInterruption.Type);
        Assert.True(e.ExitInterruption.IsValid);
    }

    [Fact]
    public void Preemption_timer_counts_instructions()
    {
        using var g = new Guest(32, a =>
        {
            var top = a.CreateLabel();
            a.Label(ref top);
            a.inc(eax);
            a.jmp(top);
        });
        g.Vmcs.Write(VmcsField.PinBasedVmExecutionControls, g.Vmcs.Read(VmcsField.PinBasedVmExecutionControls) | (ulong)PinBasedControls.ActivateVmxPreemptionTimer);
        g.Vmcs.Write(VmcsField.VmxPreemptionTimerValue, 1001);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.VmxPreemptionTimerExpired, e.Reason);
        Assert.Equal(1001UL, g.Cpu.InstructionsRetired);
        Assert.Equal(501UL, g.Cpu.Registers.Rax);
    }

    [Fact]
    public void Injected_gp_is_delivered_through_the_guest_idt()
    {
        // GDT at 0x3000: null, null, code32 (0x10), data (0x18). IDT at 0x4000: vector 13 -> handler at 0x2000.
        using var g = new Guest(32, a =>
        {
            a.nop();
            a.hlt();
        });
        ulong code32 = 0x00CF9A000000FFFFUL, data = 0x00CF92000000FFFFUL;
        g.Write(0x3010, BitConverter.GetBytes(code32));
        g.Write(0x3018, BitConverter.GetBytes(data));
        ulong gate = 0x2000 | (0x10UL << 16) | (0x8EUL << 40); // present 32-bit interrupt gate, DPL 0
        g.Write(0x4000 + 13 * 8, BitConverter.GetBytes(gate));
        g.Write(0x2000, new byte[] { 0xF4 }); // hlt
        g.Vmcs.Write(VmcsField.GuestGdtrBase, 0x3000);
        g.Vmcs.Write(VmcsField.GuestGdtrLimit, 0x1F);
        g.Vmcs.Write(VmcsField.GuestIdtrBase, 0x4000);
        g.Vmcs.Write(VmcsField.GuestIdtrLimit, 0xFF);
        g.Vmcs.Write(VmcsField.GuestRsp, 0x9000);
        g.Vmcs.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(13, InterruptionType.HardwareException, errorCodeValid: true).Value);
        g.Vmcs.Write(VmcsField.VmEntryExceptionErrorCode, 0x28);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(0x2000UL, g.Vmcs.Read(VmcsField.GuestRip));
        Assert.Equal(0x9000UL - 16, g.Vmcs.Read(VmcsField.GuestRsp));
        var stack = new Span<byte>(g.Memory.GetFramePointer(g.First) + 0x9000 - 16, 16).ToArray();
        Assert.Equal(0x28u, BitConverter.ToUInt32(stack, 0));
        Assert.Equal(0x1000u, BitConverter.ToUInt32(stack, 4));
        Assert.Equal(0x10u, BitConverter.ToUInt32(stack, 8));
    }

    [Fact]
    public void Long_mode_guest_with_four_level_paging()
    {
        using var g = new Guest(64, a =>
        {
            a.mov(rax, 0x1122334455667788L);
            a.mov(__qword_ptr[0x5000], rax);
            a.push(rax);
            a.pop(rbx);
            a.mov(rcx, __qword_ptr[0x5000]);
            a.hlt();
        });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(0x1122334455667788UL, g.Cpu.Registers.Rbx);
        Assert.Equal(0x1122334455667788UL, g.Cpu.Registers.Rcx);
        // The walk set the accessed and dirty bits of the 2 MiB page.
        var pde = new Span<byte>(g.Memory.GetFramePointer(g.First) + 0x12000, 8).ToArray();
        Assert.Equal(0x83UL | 0x20 | 0x40, BitConverter.ToUInt64(pde));
    }

    [Fact]
    public void Page_fault_on_an_unmapped_linear_address_exits_per_the_exception_bitmap()
    {
        using var g = new Guest(64, a =>
        {
            a.mov(rbx, 0x4000_0000L);
            a.mov(__dword_ptr[rbx], 1);
            a.hlt();
        });
        g.Vmcs.Write(VmcsField.ExceptionBitmap, 1u << 14);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ExceptionOrNmi, e.Reason);
        Assert.Equal(14, e.ExitInterruption.Vector);
        Assert.True(e.ExitInterruption.ErrorCodeValid);
        Assert.Equal(2u, e.InterruptionErrorCode); // not present, write, supervisor
        Assert.Equal(0x4000_0000UL, e.Qualification);
    }
}
