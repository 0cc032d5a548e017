using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

public class HypercallPageTests
{
    private static byte[] Page(HypercallInstruction instruction)
    {
        var page = new byte[HypercallPage.Size];
        HypercallPage.Write(page, instruction);
        return page;
    }

    [Fact]
    public void Stub_bytes_are_xens_mov_vmcall_ret_with_int3_filler()
    {
        byte[] page = Page(HypercallInstruction.Vmcall);
        // __HYPERVISOR_xen_version (17): mov $17,%eax; vmcall; ret; then int3 up to 32 bytes.
        byte[] expected = [0xB8, 17, 0, 0, 0, 0x0F, 0x01, 0xC1, 0xC3, .. Enumerable.Repeat((byte)0xCC, 23)];
        Assert.Equal(expected, page.AsSpan(17 * 32, 32).ToArray());
        // __HYPERVISOR_iret (23): ud2, rest int3.
        Assert.Equal([0x0F, 0x0B, .. Enumerable.Repeat((byte)0xCC, 30)], page.AsSpan(23 * 32, 32).ToArray());
        // The last stub still encodes its number.
        Assert.Equal([0xB8, 127, 0, 0, 0], page.AsSpan(127 * 32, 5).ToArray());
        Assert.Equal(0xC3, page[127 * 32 + 8]);
    }

    [Fact]
    public void Amd_variant_uses_vmmcall()
    {
        byte[] page = Page(HypercallInstruction.Vmmcall);
        Assert.Equal([0xB8, 29, 0, 0, 0, 0x0F, 0x01, 0xD9, 0xC3], page.AsSpan(29 * 32, 9).ToArray());
    }

    [Theory]
    [InlineData(64, HypercallInstruction.Vmcall)]
    [InlineData(32, HypercallInstruction.Vmcall)]
    [InlineData(64, HypercallInstruction.Vmmcall)]
    [InlineData(32, HypercallInstruction.Vmmcall)]
    public void Every_stub_decodes_to_mov_eax_nr_then_the_trap_then_ret(int bitness, HypercallInstruction instruction)
    {
        byte[] page = Page(instruction);
        for (int nr = 0; nr < HypercallPage.StubCount; nr++)
        {
            var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(page, nr * 32, 32));
            decoder.IP = (ulong)(nr * 32);
            var instructions = new List<Instruction>();
            while (decoder.IP < (ulong)(nr * 32 + 32))
                instructions.Add(decoder.Decode());

            if (nr == (int)HypercallNumber.Iret)
            {
                Assert.Equal(Mnemonic.Ud2, instructions[0].Mnemonic);
                Assert.All(instructions.Skip(1), i => Assert.Equal(Mnemonic.Int3, i.Mnemonic));
                continue;
            }

            Assert.Equal(Mnemonic.Mov, instructions[0].Mnemonic);
            Assert.Equal(Register.EAX, instructions[0].Op0Register);
            Assert.Equal((uint)nr, instructions[0].Immediate32);
            Assert.Equal(instruction == HypercallInstruction.Vmcall ? Mnemonic.Vmcall : Mnemonic.Vmmcall, instructions[1].Mnemonic);
            Assert.Equal(Mnemonic.Ret, instructions[2].Mnemonic);
            Assert.All(instructions.Skip(3), i => Assert.Equal(Mnemonic.Int3, i.Mnemonic));
            Assert.Equal(23, instructions.Count - 3);
        }
    }

    [Fact]
    public void Short_destination_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => HypercallPage.Write(new byte[4095]));
    }

    [Theory]
    [InlineData(0x0012_3000UL, true, 0x123UL)]
    [InlineData(0x0012_3001UL, false, 0x123UL)]   // page index 1: #GP
    [InlineData(0xFFFF_FFFF_FFFF_F000UL, true, 0xF_FFFF_FFFF_FFFFUL)]
    public void Msr_write_decodes_frame_and_index(ulong value, bool ok, ulong frame)
    {
        Assert.Equal(ok, HypercallPage.TryDecodeMsrWrite(value, out GuestFrameNumber gfn));
        Assert.Equal(frame, gfn.Value);
    }

    [Fact]
    public void Msr_write_installs_the_page_into_guest_ram_through_ept()
    {
        var dom = new FrameOwner(1);
        using var memory = new MachineMemory(16UL << 20);
        using var ept = new EptTables(memory, dom);
        MachineFrameNumber ram = memory.AllocateFrame(dom);
        MachineFrameNumber rom = memory.AllocateFrame(dom);
        ept.Map(new GuestPhysicalAddress(0x5000), ram, 1, EptAccess.Read | EptAccess.Write | EptAccess.Execute);
        ept.Map(new GuestPhysicalAddress(0x6000), rom, 1, EptAccess.Read | EptAccess.Execute);
        var gpm = new GuestPhysicalMemory(memory, ept.Pointer);

        Assert.True(HypercallPage.TryInstall(gpm, 0x5000));
        Assert.Equal(Page(HypercallInstruction.Vmcall), memory.GetFrame(ram).ToArray());
        Assert.False(HypercallPage.TryInstall(gpm, 0x6000));        // not writable
        Assert.False(HypercallPage.TryInstall(gpm, 0x7000));        // not mapped
        Assert.False(HypercallPage.TryInstall(gpm, 0x5001));        // page index 1
        Assert.True(memory.GetFrame(rom).IndexOfAnyExcept((byte)0) < 0);

        // The same frame through PagingDisabledGuestMemory, as a hypercall would see it.
        var linear = new PagingDisabledGuestMemory(gpm);
        Span<byte> stub = stackalloc byte[9];
        Assert.True(linear.TryRead(0x5000 + 18 * 32, stub));
        Assert.Equal([0xB8, 18, 0, 0, 0, 0x0F, 0x01, 0xC1, 0xC3], stub.ToArray());
        Assert.False(linear.TryWrite(0x6000, stub));
    }
}
