using Iced.Intel;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Tests.SystemLevel.ControlRegisterTests;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>Guest paging rules and #PF error codes (SDM Vol. 3A §4.6, §4.7, §4.8, §4.10.4).</summary>
public unsafe class PagingTests
{
    // 4-level tables: PML4 0x10000 -> PDPT 0x11000 -> PD 0x12000; PD[0] -> PT 0x13000 (4 KiB pages for 0..2 MiB).
    private const ulong Pt = 0x13000, DataPage = 0x40000;

    /// <summary>A 64-bit flat machine with paging on: code at 0x1000, 4 KiB identity pages, test page at 0x40000 with <paramref name="pte"/>.</summary>
    private static FlatTestMachine Machine(ulong pte, Action<Assembler> code, ulong cr4 = ControlBits.Cr4Pae, ulong efer = 0, bool user = false)
    {
        var m = new FlatTestMachine(1 << 20, 64);
        Span<byte> mem = m.Memory;
        BitConverter.GetBytes(0x11000UL | 7).CopyTo(mem.Slice(0x10000));
        BitConverter.GetBytes(0x12000UL | 7).CopyTo(mem.Slice(0x11000));
        BitConverter.GetBytes(Pt | 7).CopyTo(mem.Slice(0x12000));
        for (ulong p = 0; p < 256; p++) BitConverter.GetBytes((p << 12) | (user ? 7UL : 3UL)).CopyTo(mem.Slice((int)(Pt + p * 8)));
        BitConverter.GetBytes(pte).CopyTo(mem.Slice((int)(Pt + (DataPage >> 12) * 8)));
        Assemble(64, code).CopyTo(mem.Slice(0x1000));
        m.State.Cr3 = 0x10000;
        m.State.Cr4 = cr4;
        m.State.Efer |= efer;
        m.State.Cr0 |= ControlBits.Cr0Pg | ControlBits.Cr0Wp;
        if (user)
        {
            m.State.Cs.Selector |= 3; m.State.Cs.AccessRights |= 3 << 5;
            m.State.Ss.Selector |= 3; m.State.Ss.AccessRights |= 3 << 5;
        }
        m.State.Rip = 0x1000;
        m.Core.RefreshMode();
        m.Core.FlushAll();
        return m;
    }

    private static (FlatRunResult Result, ulong Cr2Candidate) Fault(ulong pte, Action<Assembler> code, ulong cr4 = ControlBits.Cr4Pae, ulong efer = 0, bool user = false)
    {
        using var m = Machine(pte, code, cr4, efer, user);
        var r = m.Run();
        return (r, m.Core.Event.GuestLinear);
    }

    [Theory]
    // pte, access (0 read, 1 write, 2 fetch), user, cr4 extra, nxe, expected error code (-1 = no fault)
    [InlineData(0x40000UL, 0, false, 0UL, false, 0)]                          // not present, read
    [InlineData(0x40000UL, 1, true, 0UL, false, 2 | 4)]                       // not present, user write
    [InlineData(0x40005UL, 1, true, 0UL, false, 1 | 2 | 4)]                   // user write to a read-only page
    [InlineData(0x40001UL, 0, true, 0UL, false, 1 | 4)]                       // user read of a supervisor page
    [InlineData(0x40001UL, 1, false, 0UL, false, 1 | 2)]                      // supervisor write, read-only, CR0.WP = 1
    [InlineData(0x40007UL | (1UL << 63), 2, false, 0UL, true, 1 | 16)]        // fetch from an XD page with NXE
    [InlineData(0x40007UL | (1UL << 63), 0, false, 0UL, false, 1 | 8)]        // XD set without NXE: reserved bit
    [InlineData(0x40007UL, 2, false, 1UL << 20, false, 1 | 16)]               // SMEP: supervisor fetch from a user page
    [InlineData(0x40007UL, 0, false, 1UL << 21, false, 1)]                    // SMAP: supervisor read of a user page, AC = 0
    [InlineData(0x40003UL, 0, false, 1UL << 21, false, -1)]                   // SMAP does not apply to supervisor pages
    [InlineData(0x40000UL, 2, false, 0UL, false, 0)]                          // fetch, not present, no NXE/SMEP: I/D = 0
    public void Page_fault_error_codes(ulong pte, int access, bool user, ulong cr4, bool nxe, int expected)
    {
        var (r, cr2) = Fault(pte, a =>
        {
            if (access == 0) a.mov(rax, __qword_ptr[DataPage + 0x18]);
            else if (access == 1) a.mov(__qword_ptr[DataPage + 0x18], rax);
            else { a.mov(eax, (uint)DataPage + 0x18); a.jmp(rax); }
            a.hlt();
        }, ControlBits.Cr4Pae | cr4, nxe ? ControlBits.EferNxe : 0, user);
        if (expected < 0)
        {
            Assert.Equal(FlatStopReason.Halt, r.Reason);
            return;
        }
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(ExceptionVector.PF, r.Vector);
        Assert.Equal((uint)expected, r.ErrorCode);
        Assert.Equal(DataPage + 0x18, cr2);
    }

    [Fact]
    public void Stac_lets_the_kernel_touch_user_pages_under_smap_and_clac_stops_it()
    {
        using var m = Machine(0x40007, a =>
        {
            a.stac();
            a.mov(rax, __qword_ptr[DataPage]);
            a.clac();
            a.mov(rbx, __qword_ptr[DataPage]);
            a.hlt();
        }, ControlBits.Cr4Pae | ControlBits.Cr4Smap);
        var r = m.Run();
        Assert.Equal(ExceptionVector.PF, r.Vector);
        Assert.Equal(1u, r.ErrorCode);
        Assert.Equal(0x1010UL, m.State.Rip); // the second load (stac 3 + mov rax, moffs64 10 + clac 3)
    }

    [Fact]
    public void Accessed_and_dirty_bits_are_set_and_invlpg_makes_a_pte_change_visible()
    {
        using var m = Machine(0x40003, a =>
        {
            a.mov(rax, __qword_ptr[DataPage]);
            a.mov(__qword_ptr[DataPage + 8], rax);
            a.mov(__qword_ptr[Pt + (DataPage >> 12) * 8], rbx);  // the kernel makes the page read-only ...
            a.invlpg(__[DataPage]);                               // ... and flushes it
            a.mov(__qword_ptr[DataPage + 8], rax);                 // #PF (write, present)
            a.hlt();
        });
        m.State.Gpr[3] = 0x40001;
        var r = m.Run();
        Assert.Equal(ExceptionVector.PF, r.Vector);
        Assert.Equal(3u, r.ErrorCode);
        ulong pml4e = BitConverter.ToUInt64(m.Memory.Slice(0x10000));
        Assert.NotEqual(0UL, pml4e & 0x20); // accessed
    }

    [Fact]
    public void Dirty_bit_set_on_first_write()
    {
        using var m = Machine(0x40003, a =>
        {
            a.mov(rax, __qword_ptr[DataPage]);
            a.mov(__qword_ptr[DataPage + 8], rax);
            a.hlt();
        });
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        ulong pte = BitConverter.ToUInt64(m.Memory.Slice((int)(Pt + (DataPage >> 12) * 8)));
        Assert.Equal(0x40063UL, pte); // P | W | A | D
    }

    [Fact]
    public void Cr3_write_flushes_translations()
    {
        using var m = Machine(0x40003, a =>
        {
            a.mov(rax, __qword_ptr[DataPage]);        // cached
            a.mov(__qword_ptr[Pt + (DataPage >> 12) * 8], rbx);
            a.mov(rcx, cr3);
            a.mov(cr3, rcx);                          // flush
            a.mov(rax, __qword_ptr[DataPage]);        // not present now
            a.hlt();
        });
        m.State.Gpr[3] = 0x40000;
        var r = m.Run();
        Assert.Equal(ExceptionVector.PF, r.Vector);
        Assert.Equal(0u, r.ErrorCode);
    }

    [Fact]
    public void Pae_32_bit_paging_with_2m_pages_and_32_bit_paging_with_4m_pages()
    {
        // PAE: PDPT at 0x20000 -> PD at 0x21000, PD[0] a 2 MiB page at 0.
        using var m = new FlatTestMachine(4 << 20, 32);
        BitConverter.GetBytes(0x21001UL).CopyTo(m.Memory.Slice(0x20000));
        BitConverter.GetBytes(0x83UL).CopyTo(m.Memory.Slice(0x21000));
        BitConverter.GetBytes(0x200083UL).CopyTo(m.Memory.Slice(0x21008)); // 2..4 MiB -> 2 MiB
        BitConverter.GetBytes(0x1234_5678UL).CopyTo(m.Memory.Slice(0x200010));
        Assemble(32, a =>
        {
            a.mov(eax, 0x20000); a.mov(cr3, eax);
            a.mov(eax, cr4); a.or(eax, 0x20); a.mov(cr4, eax);
            a.mov(eax, cr0); a.or(eax, unchecked((int)0x8000_0000)); a.mov(cr0, eax);
            a.mov(ebx, __dword_ptr[0x200010]);
            // back to 32-bit paging with PSE: PD at 0x22000, PDE[0] a 4 MiB page at 0
            a.mov(eax, cr0); a.and(eax, 0x7FFF_FFFF); a.mov(cr0, eax);
            a.mov(eax, cr4); a.and(eax, ~0x20); a.or(eax, 0x10); a.mov(cr4, eax);
            a.mov(eax, 0x22000); a.mov(cr3, eax);
            a.mov(eax, cr0); a.or(eax, unchecked((int)0x8000_0000)); a.mov(cr0, eax);
            a.mov(ecx, __dword_ptr[0x200010]);
            a.hlt();
        }).CopyTo(m.Memory.Slice(0x1000));
        BitConverter.GetBytes(0x83u).CopyTo(m.Memory.Slice(0x22000));
        m.State.Rip = 0x1000;
        var r = m.Run();
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(0x1234_5678UL, m.State.Gpr[3]);
        Assert.Equal(0x1234_5678UL, m.State.Gpr[1]);
    }

    [Fact]
    public void Ept_violation_on_a_paging_structure_reports_the_linear_address_with_bit_8_clear()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.mov(rax, __qword_ptr[0x4000_0000]); // PDPT[1] points at a PD outside guest RAM
            a.hlt();
        });
        g.Write64(0x11008, 0x800_0000UL | 3);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.EptViolation, e.Reason);
        Assert.Equal(0x800_0000UL, e.GuestPhysicalAddress);
        Assert.Equal(0x4000_0000UL, e.GuestLinearAddress);
        Assert.True(e.EptViolation.GuestLinearAddressValid);
        Assert.Equal(0UL, e.Qualification & (1UL << 8)); // a paging-structure access, not the translated address
        Assert.Equal(1UL, e.Qualification & 7);          // data read
    }

    [Fact]
    public void Invlpg_exiting_reports_the_linear_address()
    {
        using var g = new VmcsGuest(64, a => { a.invlpg(__[0x12345]); a.hlt(); });
        g.SetControl(VmcsField.PrimaryProcessorBasedVmExecutionControls, (ulong)PrimaryProcessorBasedControls.InvlpgExiting);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal((VmxExitReason)14, e.Reason);
        Assert.Equal(0x12345UL, e.Qualification);
    }
}
