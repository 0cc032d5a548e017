using System.Runtime.InteropServices;
using Iced.Intel;
using VmmKit.Ept;
using VmmKit.ReferenceHypervisor.Demo;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// A 32-bit guest with a flat GDT and an IDT whose #GP handler counts faults in EBP and skips the faulting instruction,
/// taken to be 3 bytes long (MOV to a control register, XSETBV); the body ends in CLI; HLT (poweroff).
/// </summary>
internal static class GpCatchingGuest
{
    private const uint Gdt = 0xA000, Gdtr = 0xA100, Idtr = 0xA200, Idt = 0xA800;

    /// <summary>Runs <paramref name="body"/> in a new machine until the guest powers off or crashes.</summary>
    public static (Machine Machine, Domain Domain) Run(uint load, Action<Assembler> body)
    {
        uint bodyAt = load + 0x1000, handlerAt = load + 0x2000;
        var entry = new Assembler(32);
        entry.mov(esp, load + 0x6000);
        entry.lgdt(__[Gdtr]);
        entry.lidt(__[Idtr]);
        entry.push(0x08);
        entry.push(bodyAt);
        entry.retf();

        var main = new Assembler(32);
        main.mov(ax, 0x10);
        main.mov(ds, ax);
        main.mov(es, ax);
        main.mov(ss, ax);
        main.xor(ebp, ebp);
        body(main);
        main.cli();
        main.hlt();

        var handler = new Assembler(32);
        handler.add(esp, 4);                                        // the error code
        handler.inc(ebp);
        handler.add(__dword_ptr[esp], 3);
        handler.iretd();

        byte[] image = new byte[0x4000];
        ThreadedSchedulerTests.Assemble(entry, load).CopyTo(image, 0);
        ThreadedSchedulerTests.Assemble(main, bodyAt).CopyTo(image, (int)(bodyAt - load));
        ThreadedSchedulerTests.Assemble(handler, handlerAt).CopyTo(image, (int)(handlerAt - load));
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault()) { MaxInstructionsPerVcpu = 1_000_000 };
        Assert.True(machine.TryCreateDomain(new DomainConfig("gp", Elf32ImageWriter.Write(load, image, 0x8000, load), 8 << 20),
            out var d, out string e), e);
        Span<ulong> gdt = [0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];
        Assert.True(d!.Physical.TryWrite(new GuestPhysicalAddress(Gdt), MemoryMarshal.AsBytes(gdt), out _));
        // Gate 13: present, DPL 0, 32-bit interrupt gate to 0x08:handlerAt.
        ulong gate = (handlerAt & 0xFFFFul) | (0x08ul << 16) | (0x8E00ul << 32) | ((ulong)(handlerAt >> 16) << 48);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Idt + (13 * 8)), BitConverter.GetBytes(gate), out _));
        Span<byte> pointer = stackalloc byte[6];
        BitConverter.TryWriteBytes(pointer, (ushort)23);
        BitConverter.TryWriteBytes(pointer[2..], Gdt);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Gdtr), pointer, out _));
        BitConverter.TryWriteBytes(pointer, (ushort)(256 * 8 - 1));
        BitConverter.TryWriteBytes(pointer[2..], Idt);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Idtr), pointer, out _));
        machine.Run();
        return (machine, d);
    }
}
