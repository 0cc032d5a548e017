using System.Text;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Demo;

/// <summary>
/// The built-in demo guest, assembled at startup with Iced so that <c>vmmkit-hv</c> needs no C
/// toolchain: a PVH kernel that finds Xen by CPUID (leaves 0x40000000 + n*0x100, signature
/// "XenVMMXenVMM", xen/include/public/arch-x86/cpuid.h), installs the hypercall page by writing its
/// address to the MSR that leaf base+2 names, prints a greeting and the Xen version with
/// <c>console_io</c>, and powers off with <c>sched_op(SCHEDOP_shutdown, SHUTDOWN_poweroff)</c>.
/// Without Xen it prints through port 0xE9 and stops with isa-debug-exit (port 0xF4), like the C guests.
/// </summary>
internal static class DemoGuest
{
    /// <summary>Where the image is loaded and entered (1 MiB, as Xen's own PVH test kernels).</summary>
    public const uint LoadAddress = 0x100000;

    /// <summary>The greeting the guest prints first.</summary>
    public const string Greeting = "Hello from the VmmKit demo guest!\n";

    private const int DataOffset = 0x1000;
    private const uint HypercallPage = LoadAddress + 0x2000;
    private const uint StackTop = LoadAddress + 0x4000;
    private const uint MemorySize = 0x4000;

    // xen/include/public/xen.h, sched.h, version.h.
    private const int HypervisorConsoleIo = 18, HypervisorXenVersion = 17, HypervisorSchedOp = 29;
    private const int ConsoleIoWrite = 0, XenVerVersion = 0, SchedOpShutdown = 2, ShutdownPoweroff = 0;

    /// <summary>Assembles the guest and wraps it in a PVH ELF file.</summary>
    public static byte[] Build()
    {
        var a = new Assembler(32);
        Label findLoop = a.CreateLabel(), next = a.CreateLabel(), found = a.CreateLabel(), noXen = a.CreateLabel();
        Label print = a.CreateLabel(), printDecimal = a.CreateLabel(), halt = a.CreateLabel();
        Label printE9 = a.CreateLabel(), e9Loop = a.CreateLabel(), decLoop = a.CreateLabel();
        byte[] greetingBytes = Encoding.ASCII.GetBytes(Greeting);
        byte[] versionBytes = Encoding.ASCII.GetBytes("Running on Xen ");
        byte[] noXenBytes = Encoding.ASCII.GetBytes("demo: Xen CPUID leaves not found\n");

        // The data page (absolute addresses: paging is off, so linear = guest-physical).
        var data = new MemoryStream();
        uint greeting = Put(data, greetingBytes), versionText = Put(data, versionBytes), noXenText = Put(data, noXenBytes);
        uint shutdownArg = Put(data, BitConverter.GetBytes(ShutdownPoweroff)), digits = Put(data, new byte[12]);

        // Entry: 32-bit protected mode, paging off, EBX = hvm_start_info (unused here).
        a.cld();
        a.mov(esp, StackTop);

        // Find Xen's CPUID leaves.
        a.mov(esi, 0x40000000);
        a.Label(ref findLoop);
        a.mov(eax, esi);
        a.xor(ecx, ecx);
        a.cpuid();
        a.cmp(ebx, 0x566e6558);                     // "XenV"
        a.jne(next);
        a.cmp(ecx, 0x65584d4d);                     // "MMXe"
        a.jne(next);
        a.cmp(edx, 0x4d4d566e);                     // "nVMM"
        a.je(found);
        a.Label(ref next);
        a.add(esi, 0x100);
        a.cmp(esi, 0x40010000);
        a.jb(findLoop);
        a.jmp(noXen);

        // Leaf base+2: EBX = the MSR that installs the hypercall page.
        a.Label(ref found);
        a.lea(eax, __[esi + 2]);
        a.cpuid();
        a.mov(ecx, ebx);
        a.mov(eax, HypercallPage);
        a.xor(edx, edx);
        a.wrmsr();

        // console_io(CONSOLEIO_write, len, greeting)
        a.mov(edx, greeting);
        a.mov(ecx, greetingBytes.Length);
        a.call(print);

        // "Running on Xen <major>.<minor>\n" from xen_version(XENVER_version).
        a.mov(edx, versionText);
        a.mov(ecx, versionBytes.Length);
        a.call(print);
        a.mov(ebx, XenVerVersion);
        a.xor(ecx, ecx);
        a.mov(eax, HypercallPage + (HypervisorXenVersion * 32));
        a.call(eax);
        a.push(eax);
        a.shr(eax, 16);
        a.mov(bl, (byte)'.');
        a.call(printDecimal);
        a.pop(eax);
        a.movzx(eax, ax);
        a.mov(bl, (byte)'\n');
        a.call(printDecimal);

        // sched_op(SCHEDOP_shutdown, &{ reason = SHUTDOWN_poweroff })
        a.mov(ebx, SchedOpShutdown);
        a.mov(ecx, shutdownArg);
        a.mov(eax, HypercallPage + (HypervisorSchedOp * 32));
        a.call(eax);
        a.Label(ref halt);
        a.cli();
        a.hlt();
        a.jmp(halt);

        // No Xen: report on port 0xE9 and stop through isa-debug-exit.
        a.Label(ref noXen);
        a.mov(esi, noXenText);
        a.mov(ecx, noXenBytes.Length);
        a.call(printE9);
        a.mov(eax, 3);
        a.@out(0xf4, eax);
        a.jmp(halt);

        // print(EDX = text, ECX = length) through console_io.
        a.Label(ref print);
        a.mov(ebx, ConsoleIoWrite);
        a.mov(eax, HypercallPage + (HypervisorConsoleIo * 32));
        a.call(eax);
        a.ret();

        // printDecimal(EAX = value, BL = character to append): digits into a buffer, then print.
        a.Label(ref printDecimal);
        a.mov(edi, digits + 11);
        a.mov(__byte_ptr[edi], bl);
        a.mov(ecx, 10);
        a.Label(ref decLoop);
        a.xor(edx, edx);
        a.div(ecx);
        a.add(dl, (byte)'0');
        a.dec(edi);
        a.mov(__byte_ptr[edi], dl);
        a.test(eax, eax);
        a.jnz(decLoop);
        a.mov(edx, edi);
        a.mov(ecx, digits + 12);
        a.sub(ecx, edi);
        a.jmp(print);

        // printE9(ESI = text, ECX = length)
        a.Label(ref printE9);
        a.mov(dx, 0xe9);
        a.Label(ref e9Loop);
        a.lodsb();
        a.@out(dx, al);
        a.dec(ecx);
        a.jnz(e9Loop);
        a.ret();

        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), LoadAddress);
        if (stream.Length > DataOffset)
            throw new InvalidOperationException("demo guest code overlaps its data page");
        var image = new byte[DataOffset + data.Length];
        stream.ToArray().CopyTo(image, 0);
        data.ToArray().CopyTo(image, DataOffset);
        return Elf32ImageWriter.Write(LoadAddress, image, MemorySize, LoadAddress);
    }

    private static uint Put(MemoryStream data, byte[] bytes)
    {
        while (data.Length % 4 != 0)
            data.WriteByte(0);
        uint address = LoadAddress + DataOffset + (uint)data.Length;
        data.Write(bytes);
        return address;
    }
}
