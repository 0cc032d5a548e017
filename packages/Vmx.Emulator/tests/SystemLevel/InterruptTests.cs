using Iced.Intel;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Tests.SystemLevel.ControlRegisterTests;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>IDT delivery with privilege change, TSS RSP0/IST, IRETQ to CPL 3, INT n/INT3, SYSCALL/SYSRET, SYSENTER/SYSEXIT (SDM Vol. 3A §6.12, §6.14, §5.8).</summary>
public unsafe class InterruptTests
{
    internal static ulong Gate64(ulong offset, int ist, int type, int dpl, ushort selector = 0x08) =>
        (offset & 0xFFFF) | ((ulong)selector << 16) | ((ulong)ist << 32) | ((ulong)type << 40) | ((ulong)dpl << 45) | (1UL << 47) | ((offset >> 16 & 0xFFFF) << 48);

    internal static void WriteIdtAndTss(VmcsGuest g)
    {
        g.WriteGdt();
        // TSS descriptor at 0x40 (64-bit available TSS at 0x8000, limit 0x67); GDT limit grows to 0x4F.
        g.Write64(0x5040, 0x67 | (0x8000UL << 16) | (0x89UL << 40));
        g.Write64(0x5048, 0);
        g.Write(0x6000, BitConverter.GetBytes((ushort)0x4F));
        g.Write64(0x8004, 0x90000);  // RSP0
        g.Write64(0x8024, 0xA0000);  // IST1
        // IDT at 0x7000: #GP (13) -> 0x4100 on IST1; 0x80 -> 0x4000 trap gate DPL 3; #BP (3) -> 0x4200 DPL 3.
        g.Write64(0x7000 + 13 * 16, Gate64(0x4100, 1, 0xE, 0));
        g.Write64(0x7000 + 0x80 * 16, Gate64(0x4000, 0, 0xF, 3));
        g.Write64(0x7000 + 3 * 16, Gate64(0x4200, 0, 0xE, 3));
        g.Write(0x6100, BitConverter.GetBytes((ushort)0xFFF));
        g.Write(0x6102, BitConverter.GetBytes(0x7000UL));
    }

    [Fact]
    public void Iretq_to_cpl3_int_0x80_through_rsp0_and_gp_through_ist()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.lgdt(__[0x6000]);
            a.lidt(__[0x6100]);
            a.mov(eax, 0x40);
            a.ltr(ax);
            a.push(0x33);            // SS (user data, RPL 3)
            a.push(0x70000);         // RSP
            a.push(0x202);           // RFLAGS
            a.push(0x2B);            // CS (user 64-bit code)
            a.push(0x4800);          // RIP
            a.iretq();
        }, entry: 0x3000);
        WriteIdtAndTss(g);
        g.Assemble(64, 0x4800, a =>
        {
            a.mov(eax, 42);
            a.@int(0x80);
            a.mov(r12, rax);
            a.mov(r13, rsp);
            a.hlt();                 // CPL 3: #GP(0) through IST1
        });
        g.Assemble(64, 0x4000, a =>
        {
            a.mov(r8, rsp);
            a.mov(r9, __qword_ptr[rsp + 8]);
            a.mov(r10, __qword_ptr[rsp + 32]);
            a.add(rax, 1);
            a.iretq();
        });
        g.Assemble(64, 0x4100, a =>
        {
            a.mov(r11, rsp);
            a.mov(r14, __qword_ptr[rsp + 16]); // CS of the faulting code
            a.hlt();                            // CPL 0: HLT exit
        });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        ref GuestRegisters r = ref g.Cpu.Registers;
        Assert.Equal(0x90000UL - 40, r.R8);
        Assert.Equal(0x2BUL, r.R9);
        Assert.Equal(0x33UL, r.R10);
        Assert.Equal(43UL, r.R12);
        Assert.Equal(0x70000UL, r.R13);
        Assert.Equal(0xA0000UL - 48, r.R11);
        Assert.Equal(0x2BUL, r.R14);
        Assert.Equal(0UL, g.Read64(0xA0000 - 48)); // #GP error code 0
        Assert.Equal(0x08UL, g.Vmcs.Read(VmcsField.GuestCsSelector));
        Assert.Equal(0UL, (g.Vmcs.Read(VmcsField.GuestSsAccessRights) >> 5) & 3); // CPL 0
    }

    [Fact]
    public void Int3_exits_as_a_software_exception_with_its_length_when_in_the_bitmap()
    {
        using var g = new VmcsGuest(64, a => { a.nop(); a.int3(); a.hlt(); });
        g.Vmcs.Write(VmcsField.ExceptionBitmap, 1u << 3);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ExceptionOrNmi, e.Reason);
        Assert.Equal(3, e.ExitInterruption.Vector);
        Assert.Equal(InterruptionType.SoftwareException, e.ExitInterruption.Type);
        Assert.Equal(1u, e.InstructionLength);
        Assert.Equal(0x1001UL, g.Vmcs.Read(VmcsField.GuestRip));
    }

    [Fact]
    public void Int_n_through_a_gate_with_dpl_below_cpl_is_gp_with_the_idt_error_code()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.lgdt(__[0x6000]);
            a.lidt(__[0x6100]);
            a.mov(eax, 0x40);
            a.ltr(ax);
            a.push(0x33); a.push(0x70000); a.push(0x202); a.push(0x2B); a.push(0x4800);
            a.iretq();
        }, entry: 0x3000);
        WriteIdtAndTss(g);
        g.Write64(0x7000 + 0x81 * 16, Gate64(0x4000, 0, 0xE, 0)); // DPL 0 gate
        g.Assemble(64, 0x4800, a => { a.@int(0x81); });
        g.Assemble(64, 0x4100, a => { a.mov(r11, __qword_ptr[rsp]); a.mov(r12, __qword_ptr[rsp + 8]); a.hlt(); });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(0x81UL * 8 + 2, g.Cpu.Registers.R11); // IDT bit, EXT = 0
        Assert.Equal(0x4800UL, g.Cpu.Registers.R12);        // the fault points at the INT instruction
    }

    [Fact]
    public void Syscall_and_sysret_switch_privilege_with_star_lstar_fmask()
    {
        using var m = new FlatTestMachine(1 << 20, 64);
        Assemble(64, a => { a.syscall(); a.hlt(); }).CopyTo(m.Memory.Slice(0x1000));
        Assemble(64, a => { a.mov(rbx, rcx); a.mov(rdx, r11); a.pushfq(); a.pop(rsi); a.sysretq(); }, 0x2000).CopyTo(m.Memory.Slice(0x2000));
        m.State.Efer |= ControlBits.EferSce;
        m.State.Star = (0x18UL << 48) | (0x08UL << 32);
        m.State.Lstar = 0x2000;
        m.State.Sfmask = 0x200 | 0x100;
        m.State.Gpr[4] = 0x80000;
        m.State.SetRflags(0x202);
        m.State.Rip = 0x1000;
        var r = m.Run();
        Assert.Equal(0x1002UL, m.State.Rip);
        Assert.Equal(ExceptionVector.GP, r.Vector); // HLT at CPL 3
        Assert.Equal(0x1002UL, m.State.Gpr[3]);      // RCX = return RIP
        Assert.Equal(0x202UL, m.State.Gpr[2]);       // R11 = RFLAGS
        Assert.Equal(0x2UL, m.State.Gpr[6] & 0x302); // IF and TF masked in the kernel
        Assert.Equal((ushort)(0x28 | 3), m.State.Cs.Selector);
        Assert.Equal((ushort)(0x20 | 3), m.State.Ss.Selector);
        Assert.Equal(0x1002UL, m.State.Rip);
        Assert.Equal(0x200UL, m.State.GetRflags() & 0x200);
    }

    [Fact]
    public void Sysenter_and_sysexit_in_32_bit_protected_mode()
    {
        using var m = new FlatTestMachine(1 << 20, 32);
        Assemble(32, a => { a.sysenter(); }).CopyTo(m.Memory.Slice(0x1000));
        Assemble(32, a => { a.mov(ebx, esp); a.mov(edx, 0x1100); a.mov(ecx, 0x60000); a.sysexit(); }, 0x2000).CopyTo(m.Memory.Slice(0x2000));
        Assemble(32, a => { a.hlt(); }, 0x1100).CopyTo(m.Memory.Slice(0x1100));
        m.State.SysenterCs = 0x10;
        m.State.SysenterEip = 0x2000;
        m.State.SysenterEsp = 0x50000;
        m.State.Rip = 0x1000;
        var r = m.Run();
        Assert.Equal(ExceptionVector.GP, r.Vector); // HLT at CPL 3
        Assert.Equal(0x50000UL, m.State.Gpr[3]);
        Assert.Equal(0x1100UL, m.State.Rip);
        Assert.Equal(0x60000UL, m.State.Gpr[4]);
        Assert.Equal((ushort)(0x20 | 3), m.State.Cs.Selector);
        Assert.Equal((ushort)(0x28 | 3), m.State.Ss.Selector);
    }
}
