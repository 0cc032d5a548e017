using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>
/// What a VM entry must pick up although the processor keeps state between entries: the bitmaps the host rewrote or
/// moved (SDM Vol. 3C §25.11.4: changed only while no processor runs the guest, so seen at the next entry), page
/// tables the host rewrote or a new guest CR3 (§28.3.3.1: without "enable VPID" an entry invalidates the linear
/// mappings of VPID 0000H), and code the host rewrote between exits.
/// </summary>
public unsafe class EntryStateTests
{
    private const uint Lstar = 0xC000_0082;

    [Fact]
    public void Msr_bitmap_rewritten_in_place_between_exits_applies_at_the_next_entry()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.mov(ecx, Lstar); a.mov(eax, 0x1234); a.xor(edx, edx); a.wrmsr();
            a.cpuid();
            a.mov(ecx, Lstar); a.mov(eax, 0x5678); a.xor(edx, edx); a.wrmsr();
            a.hlt();
        });
        ulong bitmap = UseMsrBitmap(g, 0x90000, new byte[4096]); // nothing exits
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Cpuid, e.Reason);
        // The host now intercepts writes of LSTAR (write-high bitmap at 3072, bit 0x82).
        g.Write(0x90000 + 3072 + (0x82 >> 3), [(byte)(1 << (0x82 & 7))]);
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Wrmsr, e.Reason);
        Assert.Equal(0x5678UL, g.Cpu.Registers.Rax);
        Assert.Equal(bitmap, g.Vmcs.Read(VmcsField.MsrBitmapsAddress));
    }

    [Fact]
    public void Msr_bitmap_address_changed_between_exits_selects_the_new_policy()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.mov(ecx, Lstar); a.rdmsr();
            a.cpuid();
            a.mov(ecx, Lstar); a.rdmsr();
            a.hlt();
        });
        var exitAll = new byte[4096];
        exitAll.AsSpan().Fill(0xFF);
        ulong passThrough = UseMsrBitmap(g, 0x90000, new byte[4096]);
        g.Write(0x91000, exitAll);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Cpuid, e.Reason);
        g.Vmcs.Write(VmcsField.MsrBitmapsAddress, passThrough + 0x1000);
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Rdmsr, e.Reason);
        Assert.Equal((ulong)Lstar, g.Cpu.Registers.Rcx);
    }

    [Fact]
    public void Io_bitmaps_rewritten_between_exits_apply_at_the_next_entry_for_both_halves()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.mov(al, 1); a.@out(0x80, al);
            a.mov(dx, 0x8001); a.@out(dx, al);
            a.cpuid();
            a.@out(0x80, al);
            a.mov(dx, 0x8001); a.@out(dx, al);
            a.hlt();
        });
        ulong machine = (ulong)g.First.Value * 4096;
        g.Vmcs.Write(VmcsField.IoBitmapAAddress, machine + 0x92000);
        g.Vmcs.Write(VmcsField.IoBitmapBAddress, machine + 0x93000);
        g.SetControl(VmcsField.PrimaryProcessorBasedVmExecutionControls, (ulong)PrimaryProcessorBasedControls.UseIoBitmaps);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Cpuid, e.Reason);
        g.Write(0x92000 + (0x80 >> 3), [1 << (0x80 & 7)]);          // bitmap A: port 0080
        g.Write(0x93000 + (0x0001 >> 3), [1 << (0x0001 & 7)]);      // bitmap B: port 8001
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.IoInstruction, e.Reason);
        Assert.Equal(0x80UL, e.Qualification >> 16);
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.IoInstruction, e.Reason);
        Assert.Equal(0x8001UL, e.Qualification >> 16);
    }

    [Fact]
    public void Guest_cr3_changed_by_the_host_between_exits_translates_through_the_new_tables()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.mov(rax, __qword_ptr[0x200000]);
            a.cpuid();
            a.mov(rbx, __qword_ptr[0x200000]);
            a.hlt();
        });
        MapSecondMegabyte(g, pd: 0x12000, pt: 0x16000, frame: 0x30000);
        // A second tree: the same identity 2 MiB, then linear 0x200000 on another frame.
        g.Write64(0x13000, 0x14000UL | 7);
        g.Write64(0x14000, 0x15000UL | 7);
        g.Write64(0x15000, 0x87UL);
        MapSecondMegabyte(g, pd: 0x15000, pt: 0x17000, frame: 0x31000);
        g.Write64(0x30000, 0x1111);
        g.Write64(0x31000, 0x2222);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Cpuid, e.Reason);
        Assert.Equal(0x1111UL, g.Cpu.Registers.Rax);
        g.Vmcs.Write(VmcsField.GuestCr3, 0x13000);
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(0x2222UL, g.Cpu.Registers.Rbx);
    }

    [Fact]
    public void Page_table_entry_rewritten_by_the_host_between_exits_is_seen_without_invlpg()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.mov(rax, __qword_ptr[0x200000]);
            a.cpuid();
            a.mov(rbx, __qword_ptr[0x200000]);
            a.hlt();
        });
        MapSecondMegabyte(g, pd: 0x12000, pt: 0x16000, frame: 0x30000);
        g.Write64(0x30000, 0x1111);
        g.Write64(0x31000, 0x2222);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(0x1111UL, g.Cpu.Registers.Rax);
        // Same CR3, same everything: only the PTE changed. Without VPID the entry drops the cached translation.
        g.Write64(0x16000, 0x31000UL | 7);
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(0x2222UL, g.Cpu.Registers.Rbx);
    }

    [Fact]
    public void Code_rewritten_by_the_host_between_exits_is_decoded_again()
    {
        using var g = new VmcsGuest(64, a =>
        {
            var top = a.CreateLabel();
            a.Label(ref top);
            a.mov(ebx, 0x11);
            a.cpuid();
            a.jmp(top);
        });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Cpuid, e.Reason);
        Assert.Equal(0x11UL, g.Cpu.Registers.Rbx);
        g.Write(0x1001, BitConverter.GetBytes(0x22u)); // mov ebx, imm32: BB imm32
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Cpuid, e.Reason);
        Assert.Equal(0x22UL, g.Cpu.Registers.Rbx);
    }

    [Fact]
    public void Supervisor_page_read_at_cpl0_faults_after_the_guest_drops_to_cpl3()
    {
        // The same linear page, read first at CPL 0 (filling the TLB), then at CPL 3 after IRETQ: the cached translation
        // must not carry the supervisor's rights over (SDM Vol. 3A §4.6.1).
        using var g = new VmcsGuest(64, a =>
        {
            a.mov(rax, __qword_ptr[0x200000]);
            a.push(0x33); a.push(0x80000); a.push(0x2); a.push(0x2B); a.push(0x3000);
            a.iretq();
        });
        g.WriteGdt();
        g.Assemble(64, 0x3000, a => { a.mov(rbx, __qword_ptr[0x200000]); a.hlt(); });
        MapSecondMegabyte(g, pd: 0x12000, pt: 0x16000, frame: 0x30000);
        g.Write64(0x16000, 0x30000UL | 3); // present, writable, supervisor only (the 2 MiB page below is user)
        g.Vmcs.Write(VmcsField.GuestGdtrBase, 0x5000);
        g.Vmcs.Write(VmcsField.GuestGdtrLimit, 8 * 8 - 1);
        g.Vmcs.Write(VmcsField.ExceptionBitmap, 1u << 14);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ExceptionOrNmi, e.Reason);
        Assert.Equal(14u, e.InterruptionInformation & 0xFF);
        Assert.Equal(0x200000UL, e.Qualification);
        Assert.Equal(0x3000UL, g.Vmcs.Read(VmcsField.GuestRip));
    }

    private static ulong UseMsrBitmap(VmcsGuest g, ulong gpa, byte[] bitmap)
    {
        g.Write(gpa, bitmap);
        ulong machine = (ulong)g.First.Value * 4096 + gpa;
        g.Vmcs.Write(VmcsField.MsrBitmapsAddress, machine);
        g.SetControl(VmcsField.PrimaryProcessorBasedVmExecutionControls, (ulong)PrimaryProcessorBasedControls.UseMsrBitmaps);
        return machine;
    }

    /// <summary>Linear 0x200000 (PD entry 1 of <paramref name="pd"/>) through page table <paramref name="pt"/> to <paramref name="frame"/>.</summary>
    private static void MapSecondMegabyte(VmcsGuest g, ulong pd, ulong pt, ulong frame)
    {
        g.Write64(pd + 8, pt | 7);
        g.Write64(pt, frame | 7);
    }
}
