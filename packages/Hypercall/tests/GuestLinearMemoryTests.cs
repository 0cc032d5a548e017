using VmmKit.Ept;

namespace VmmKit.Hypercall.Tests;

/// <summary><see cref="GuestLinearMemory"/>: hypercall buffers through the guest's paging and the domain's EPT.</summary>
public sealed unsafe class GuestLinearMemoryTests : IDisposable
{
    private const ulong Cr0Pg = 1ul << 31, Cr0Wp = 1ul << 16, Cr4Pae = 1ul << 5, Cr4Smap = 1ul << 21, EferLma = 1ul << 10;
    private const ulong RamBytes = 4 << 20;

    private readonly MachineMemory _machine = new(16 << 20);
    private readonly EptTables _ept;
    private readonly GuestPhysicalMemory _m;
    private GuestPagingRegisters _registers = new(Cr0Pg, 0x20000, Cr4Pae, EferLma, 2);

    public GuestLinearMemoryTests()
    {
        var owner = new FrameOwner(1);
        _ept = new EptTables(_machine, owner);
        _ept.Map(new GuestPhysicalAddress(0), _machine.AllocateContiguous(owner, RamBytes / 4096), RamBytes / 4096, EptAccess.Read | EptAccess.Write);
        _m = new GuestPhysicalMemory(_machine, _ept.Pointer);
        // 4-level: linear 0x40_0000 + n*4 KiB -> PT 0x23000; page 0 -> 0x9000, page 1 -> 0x5000 (read-only), page 2 -> 0x7000 (user).
        W64(0x20000, 0x21000 | 7);
        W64(0x21000, 0x22000 | 7);
        W64(0x22000 + (2 * 8), 0x23000 | 7);
        W64(0x23000, 0x9000 | 3);
        W64(0x23000 + 8, 0x5000 | 1);
        W64(0x23000 + 16, 0x7000 | 7);
    }

    public void Dispose()
    {
        _ept.Dispose();
        _machine.Dispose();
    }

    private GuestLinearMemory View() => new(_m, () => _registers);

    private void W64(ulong gpa, ulong v) => Assert.True(_m.TryWrite(new GuestPhysicalAddress(gpa), in v));

    private ulong R64(ulong gpa)
    {
        Assert.True(_m.TryRead(new GuestPhysicalAddress(gpa), out ulong v));
        return v;
    }

    [Fact]
    public void A_copy_across_a_page_boundary_follows_each_page_translation()
    {
        byte[] data = [1, 2, 3, 4, 5, 6, 7, 8];
        _registers = new(Cr0Pg, 0x20000, Cr4Pae, EferLma, 2); // WP = 0: a supervisor write ignores R/W
        Assert.True(View().TryWrite(0x40_0FFC, data));
        Assert.True(_m.TryRead(new GuestPhysicalAddress(0x9FFC), out uint low));
        Assert.True(_m.TryRead(new GuestPhysicalAddress(0x5000), out uint high));
        Assert.Equal(0x0403_0201u, low);
        Assert.Equal(0x0807_0605u, high);
        var back = new byte[8];
        Assert.True(View().TryRead(0x40_0FFC, back));
        Assert.Equal(data, back);
        // §4.8: the walk set A on every level and D on the written leaves.
        Assert.Equal(0x9000ul | 0x63, R64(0x23000));
        Assert.Equal(0x5000ul | 0x61, R64(0x23008));
        Assert.Equal(0x21000ul | 0x27, R64(0x20000));
    }

    [Fact]
    public void Write_protect_smap_and_missing_pages_fail_the_copy()
    {
        var view = View();
        _registers = new(Cr0Pg | Cr0Wp, 0x20000, Cr4Pae, EferLma, 2);
        Assert.False(view.TryWrite(0x40_1000, [1]));
        Assert.True(view.TryRead(0x40_1000, new byte[1]));
        Assert.False(view.TryRead(0x40_3000, new byte[1])); // PTE 3 not present
        Assert.False(view.TryRead(0x0000_8000_0000_0000, new byte[1])); // not canonical
        // SMAP: a user page is off limits to the hypervisor's supervisor copy unless the guest set RFLAGS.AC.
        _registers = new(Cr0Pg, 0x20000, Cr4Pae | Cr4Smap, EferLma, 2);
        Assert.False(view.TryRead(0x40_2000, new byte[1]));
        _registers = new(Cr0Pg, 0x20000, Cr4Pae | Cr4Smap, EferLma, 2 | (1ul << 18));
        Assert.True(view.TryRead(0x40_2000, new byte[1]));
    }

    [Fact]
    public void With_paging_off_a_linear_address_is_guest_physical_and_32_bits_wide()
    {
        _registers = new(0, 0, 0, 0, 2);
        Assert.True(View().TryWrite(0x1234, [0xAB]));
        Assert.True(_m.TryRead(new GuestPhysicalAddress(0x1234), out byte b));
        Assert.Equal(0xAB, b);
        Assert.False(View().TryRead(0x1_0000_1234, new byte[1]));
        Assert.False(View().TryRead(RamBytes, new byte[1])); // outside the domain's EPT
    }

    [Fact]
    public void TranslateToHost_reaches_the_byte_TryRead_reads_and_refuses_what_it_refuses()
    {
        var view = View();
        _registers = new(Cr0Pg | Cr0Wp, 0x20000, Cr4Pae, EferLma, 2);
        byte* p = view.TranslateToHost(0x40_0123, 8, write: false);
        Assert.True(p != null);
        *p = 0x5A;
        Assert.True(_m.TryRead(new GuestPhysicalAddress(0x9123), out byte b));
        Assert.Equal(0x5A, b);
        Assert.True(view.TranslateToHost(0x40_1000, 1, write: false) != null);  // read-only page: reads only
        Assert.True(view.TranslateToHost(0x40_1000, 1, write: true) == null);   // CR0.WP
        Assert.True(view.TranslateToHost(0x40_3000, 1, write: false) == null);  // PTE 3 not present
        Assert.True(view.TranslateToHost(0x40_0FFC, 8, write: false) == null);  // crosses a page: TryRead decides
        Assert.True(view.TranslateToHost(0x40_0000, 0, write: false) == null);
        Assert.True(view.TranslateToHost(0x40_0000, 4097, write: false) == null);
        Assert.True(view.TranslateToHost(0x40_0000, -1, write: false) == null);
        Assert.True(view.TranslateToHost(0x0000_8000_0000_0000, 1, write: false) == null); // not canonical
        _registers = new(Cr0Pg, 0x20000, Cr4Pae | Cr4Smap, EferLma, 2);
        Assert.True(view.TranslateToHost(0x40_2000, 1, write: false) == null);  // SMAP, RFLAGS.AC clear
        _registers = new(0, 0, 0, 0, 2);
        Assert.True(view.TranslateToHost(0x1_0000_1234, 1, write: false) == null); // paging off: 32-bit addresses
        Assert.True(view.TranslateToHost(RamBytes, 1, write: false) == null);      // outside the domain's EPT
    }

    [Fact]
    public void A_write_translation_sets_accessed_and_dirty_as_the_write_would()
    {
        Assert.True(View().TranslateToHost(0x40_0010, 2, write: true) != null);
        Assert.Equal(0x9000ul | 0x63, R64(0x23000)); // §4.8: A and D on the leaf
        Assert.Equal(0x21000ul | 0x27, R64(0x20000));
    }
}
