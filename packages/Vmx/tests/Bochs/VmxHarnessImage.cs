using Iced.Intel;
using VmmKit.Ept;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>
/// Builds a 1.44 MB boot floppy that turns a Bochs PC into a tiny 32-bit VMX host:
/// boot sector (real mode) loads the rest with INT 13h, enters protected mode, enables PSE paging, RDMSRs and logs
/// the VMX capability MSRs, VMXON, then for each <see cref="HarnessCase"/> VMCLEAR + VMPTRLD + VMWRITE every field +
/// VMLAUNCH, logging VMfail / VM-exit information on port 0xE9 and resuming the guest after CPUID, I/O, VMCALL and
/// EPT-violation exits. Guest memory and EPT tables come from a VmmKit.Ept <see cref="MachineMemory"/> whose allocated
/// frames are copied to their machine addresses.
/// </summary>
internal static class VmxHarnessImage
{
    // Physical memory map of the harness (all below 1 MiB except machine frames copied from the image).
    public const uint BootSector = 0x7C00;
    public const uint BootVars = 0x0600;
    public const uint Code = 0x8000;
    public const uint CodeLimit = 0xFF00;
    public const uint PageDirectory = 0x10000;
    public const uint VmxonRegion = 0x11000;
    public const uint VmcsRegion = 0x12000;
    public const uint StackTop = 0x14000;
    public const uint Gdt = 0x14000;
    public const uint GdtPointer = 0xFF00; // below 64 KiB: the real-mode LGDT addresses it with DS = 0
    public const uint Tss = 0x14100;
    public const uint Idt = 0x14200;
    public const uint IoBitmapA = 0x15000;
    public const uint IoBitmapB = 0x16000;
    public const uint MsrBitmap = 0x17000;
    public const uint Vars = 0x18000;
    public const uint Cases = 0x20000;
    public const uint ImageLimit = 0x90000;

    public const ushort CodeSelector = 0x08;
    public const ushort DataSelector = 0x10;
    public const ushort TssSelector = 0x18;

    // Host control registers the stub sets (and the VMCS host-state area must name).
    public const uint HostCr0 = 0x8000_0031; // PG | NE | ET | PE
    public const uint HostCr4 = 0x0000_2010; // VMXE | PSE
    public const uint HostCr3 = PageDirectory;

    // Variables (at Vars).
    private const uint VarVmxonPtr = Vars + 0x00;   // qword
    private const uint VarVmcsPtr = Vars + 0x08;    // qword
    private const uint VarCaseIndex = Vars + 0x10;
    private const uint VarCasePtr = Vars + 0x14;
    private const uint VarExitCount = Vars + 0x18;
    private const uint VarGuestEbx = Vars + 0x1C;
    private const uint VarMsrFault = Vars + 0x20;
    private const uint VarCopyList = Vars + 0x24;

    public const int MaxExitsPerCase = 24;

    /// <summary>Instruction exits the handler resumes past (RIP += VM-exit instruction length).</summary>
    private static readonly VmxExitReason[] SkippedExits =
    [
        VmxExitReason.Cpuid, VmxExitReason.IoInstruction, VmxExitReason.Vmcall, VmxExitReason.ControlRegisterAccess,
        VmxExitReason.MovDr, VmxExitReason.Invlpg, VmxExitReason.Rdtsc, VmxExitReason.Rdmsr, VmxExitReason.Wrmsr,
    ];

    /// <summary>The host RIP of the exit handler, known after assembling the stub (cases must set HostRip to it).</summary>
    public static uint ExitHandlerAddress { get; } = AssembleHost(out _, out _, out _).ExitHandler;

    /// <summary>The host state every case uses.</summary>
    public static VmcsHostState HostState => new()
    {
        Cr0 = HostCr0,
        Cr3 = HostCr3,
        Cr4 = HostCr4,
        CodeSelector = CodeSelector,
        DataSelector = DataSelector,
        TaskSelector = TssSelector,
        TrBase = Tss,
        GdtrBase = Gdt,
        IdtrBase = Idt,
        Rsp = StackTop,
        Rip = ExitHandlerAddress,
    };

    /// <summary>Builds the floppy image running <paramref name="cases"/>, with <paramref name="memory"/>'s frames at or above <paramref name="firstCopiedFrame"/> copied to their machine addresses.</summary>
    public static byte[] Build(IReadOnlyList<HarnessCase> cases, MachineMemory? memory, ulong firstCopiedFrame = 512)
    {
        var image = new byte[1474560];
        void Put(uint physical, ReadOnlySpan<byte> bytes) => bytes.CopyTo(image.AsSpan((int)(physical - BootSector)));
        void Put32(uint physical, uint v) => BitConverter.TryWriteBytes(image.AsSpan((int)(physical - BootSector)), v);
        void Put64(uint physical, ulong v) => BitConverter.TryWriteBytes(image.AsSpan((int)(physical - BootSector)), v);

        var (host, gpHandler, fatalHandler, exitHandler) = AssembleHost(out byte[] code, out _, out _);
        if (Code + code.Length > CodeLimit)
            throw new InvalidOperationException("host stub too large");
        Put(Code, code);

        // Page directory: 1024 identity-mapped 4 MiB pages (P | RW | PS).
        for (uint i = 0; i < 1024; i++)
            Put32(PageDirectory + 4 * i, (i << 22) | 0x83);

        // GDT: null, flat code, flat data, 32-bit TSS; pointer; IDT with #GP → skip-RDMSR handler, others fatal.
        Put64(Gdt + 0x08, 0x00CF_9A00_0000_FFFFul);
        Put64(Gdt + 0x10, 0x00CF_9200_0000_FFFFul);
        ulong tssDesc = 0x67 | ((ulong)(Tss & 0xFFFFFF) << 16) | (0x89ul << 40) | ((ulong)(Tss >> 24) << 56);
        Put64(Gdt + 0x18, tssDesc);
        BitConverter.TryWriteBytes(image.AsSpan((int)(GdtPointer - BootSector)), (ushort)0x1F);
        Put32(GdtPointer + 2, Gdt);
        for (uint v = 0; v < 32; v++)
        {
            uint h = v == 13 ? gpHandler : fatalHandler;
            Put32(Idt + 8 * v, (h & 0xFFFF) | ((uint)CodeSelector << 16));
            Put32(Idt + 8 * v + 4, (h & 0xFFFF0000) | 0x8E00);
        }
        Put32(Idt + 0x100, 0); // after the IDT: pseudo-descriptor for LIDT at Idt+0x100
        BitConverter.TryWriteBytes(image.AsSpan((int)(Idt + 0x100 - BootSector)), (ushort)(32 * 8 - 1));
        Put32(Idt + 0x102, Idt);

        Put64(VarVmxonPtr, VmxonRegion);
        Put64(VarVmcsPtr, VmcsRegion);

        // Cases: count, then per case: field count, (encoding, low, high) triples, watch count, watched addresses.
        uint p = Cases;
        Put32(p, (uint)cases.Count);
        p += 4;
        foreach (var c in cases)
        {
            var fields = HarnessFields(c.Vmcs);
            Put32(p, (uint)fields.Count);
            p += 4;
            foreach (var (enc, value) in fields)
            {
                Put32(p, enc);
                Put32(p + 4, (uint)value);
                Put32(p + 8, (uint)(value >> 32));
                p += 12;
            }
            var watch = c.Watch ?? [];
            Put32(p, (uint)watch.Count);
            p += 4;
            foreach (uint address in watch)
            {
                Put32(p, address);
                p += 4;
            }
        }

        // Copy list: count, (destination, source) pairs; then the 4 KiB frames.
        p = (p + 0xFFF) & ~0xFFFu;
        var frames = new List<MachineFrameNumber>();
        if (memory != null)
            for (ulong f = firstCopiedFrame; f < memory.FrameCount; f++)
                if (memory.TryGetOwner(new MachineFrameNumber(f), out _))
                    frames.Add(new MachineFrameNumber(f));
        uint list = p;
        Put32(VarCopyList, list);
        Put32(list, (uint)frames.Count);
        uint pages = (list + 4 + 8 * (uint)frames.Count + 0xFFF) & ~0xFFFu;
        for (int i = 0; i < frames.Count; i++)
        {
            uint src = pages + (uint)i * 4096;
            Put32(list + 4 + 8 * (uint)i, (uint)frames[i].Address);
            Put32(list + 8 + 8 * (uint)i, src);
            if (src + 4096 > ImageLimit)
                throw new InvalidOperationException("harness image too large");
            Put(src, memory!.GetFrame(frames[i]));
        }
        uint end = frames.Count > 0 ? pages + (uint)frames.Count * 4096 : pages;
        if (end > ImageLimit)
            throw new InvalidOperationException("harness image too large");

        ushort sectors = (ushort)((end - (BootSector + 512) + 511) / 512);
        Put(BootSector, AssembleBootSector(sectors));
        return image;
    }

    /// <summary>The fields the stub VMWRITEs for a case: every field of SDM Appendix B the Bochs VMCS supports, with its value (natural-width values must fit 32 bits on the 32-bit host).</summary>
    public static List<(uint Encoding, ulong Value)> HarnessFields(Vmcs vmcs)
    {
        var list = new List<(uint, ulong)>();
        foreach (var f in HarnessFieldSet)
            list.Add(((uint)f, vmcs.Read(f)));
        return list;
    }

    /// <summary>The fields written for every case: controls, guest state and host state that a Bochs Haswell/Skylake model supports.</summary>
    public static readonly VmcsField[] HarnessFieldSet =
    [
        VmcsField.VirtualProcessorIdentifier,
        VmcsField.GuestEsSelector, VmcsField.GuestCsSelector, VmcsField.GuestSsSelector, VmcsField.GuestDsSelector,
        VmcsField.GuestFsSelector, VmcsField.GuestGsSelector, VmcsField.GuestLdtrSelector, VmcsField.GuestTrSelector,
        VmcsField.HostEsSelector, VmcsField.HostCsSelector, VmcsField.HostSsSelector, VmcsField.HostDsSelector,
        VmcsField.HostFsSelector, VmcsField.HostGsSelector, VmcsField.HostTrSelector,
        VmcsField.IoBitmapAAddress, VmcsField.IoBitmapBAddress, VmcsField.MsrBitmapsAddress,
        VmcsField.VmExitMsrStoreAddress, VmcsField.VmExitMsrLoadAddress, VmcsField.VmEntryMsrLoadAddress,
        VmcsField.TscOffset, VmcsField.VirtualApicAddress, VmcsField.ApicAccessAddress, VmcsField.EptPointer,
        VmcsField.VmcsLinkPointer, VmcsField.GuestIa32Debugctl, VmcsField.GuestIa32Pat, VmcsField.GuestIa32Efer,
        VmcsField.GuestPdpte0, VmcsField.GuestPdpte1, VmcsField.GuestPdpte2, VmcsField.GuestPdpte3,
        VmcsField.HostIa32Pat, VmcsField.HostIa32Efer,
        VmcsField.PinBasedVmExecutionControls, VmcsField.PrimaryProcessorBasedVmExecutionControls, VmcsField.ExceptionBitmap,
        VmcsField.PageFaultErrorCodeMask, VmcsField.PageFaultErrorCodeMatch, VmcsField.Cr3TargetCount,
        VmcsField.VmExitControls, VmcsField.VmExitMsrStoreCount, VmcsField.VmExitMsrLoadCount,
        VmcsField.VmEntryControls, VmcsField.VmEntryMsrLoadCount, VmcsField.VmEntryInterruptionInformation,
        VmcsField.VmEntryExceptionErrorCode, VmcsField.VmEntryInstructionLength, VmcsField.TprThreshold,
        VmcsField.SecondaryProcessorBasedVmExecutionControls,
        VmcsField.GuestEsLimit, VmcsField.GuestCsLimit, VmcsField.GuestSsLimit, VmcsField.GuestDsLimit,
        VmcsField.GuestFsLimit, VmcsField.GuestGsLimit, VmcsField.GuestLdtrLimit, VmcsField.GuestTrLimit,
        VmcsField.GuestGdtrLimit, VmcsField.GuestIdtrLimit,
        VmcsField.GuestEsAccessRights, VmcsField.GuestCsAccessRights, VmcsField.GuestSsAccessRights, VmcsField.GuestDsAccessRights,
        VmcsField.GuestFsAccessRights, VmcsField.GuestGsAccessRights, VmcsField.GuestLdtrAccessRights, VmcsField.GuestTrAccessRights,
        VmcsField.GuestInterruptibilityState, VmcsField.GuestActivityState, VmcsField.GuestIa32SysenterCs,
        VmcsField.VmxPreemptionTimerValue, VmcsField.HostIa32SysenterCs,
        VmcsField.Cr0GuestHostMask, VmcsField.Cr4GuestHostMask, VmcsField.Cr0ReadShadow, VmcsField.Cr4ReadShadow,
        VmcsField.GuestCr0, VmcsField.GuestCr3, VmcsField.GuestCr4,
        VmcsField.GuestEsBase, VmcsField.GuestCsBase, VmcsField.GuestSsBase, VmcsField.GuestDsBase, VmcsField.GuestFsBase,
        VmcsField.GuestGsBase, VmcsField.GuestLdtrBase, VmcsField.GuestTrBase, VmcsField.GuestGdtrBase, VmcsField.GuestIdtrBase,
        VmcsField.GuestDr7, VmcsField.GuestRsp, VmcsField.GuestRip, VmcsField.GuestRflags, VmcsField.GuestPendingDebugExceptions,
        VmcsField.GuestIa32SysenterEsp, VmcsField.GuestIa32SysenterEip,
        VmcsField.HostCr0, VmcsField.HostCr3, VmcsField.HostCr4, VmcsField.HostFsBase, VmcsField.HostGsBase, VmcsField.HostTrBase,
        VmcsField.HostGdtrBase, VmcsField.HostIdtrBase, VmcsField.HostIa32SysenterEsp, VmcsField.HostIa32SysenterEip,
        VmcsField.HostRsp, VmcsField.HostRip,
    ];

    private static byte[] AssembleBootSector(ushort sectors)
    {
        var a = new Assembler(16);
        var loop = a.CreateLabel();
        var retry = a.CreateLabel();
        var fail = a.CreateLabel();
        a.cli();
        a.xor(ax, ax);
        a.mov(ds, ax);
        a.mov(ss, ax);
        a.mov(sp, (ushort)BootSector);
        a.mov(__byte_ptr[BootVars], dl);              // BIOS boot drive
        a.mov(__word_ptr[BootVars + 2], 1);            // next LBA
        a.mov(__word_ptr[BootVars + 4], sectors);      // sectors left
        a.mov(ax, (ushort)((BootSector + 512) >> 4));
        a.mov(es, ax);
        a.Label(ref loop);
        a.mov(__byte_ptr[BootVars + 6], 5);            // retries
        a.Label(ref retry);
        a.mov(ax, __word_ptr[BootVars + 2]);
        a.xor(dx, dx);
        a.mov(cx, 18);
        a.div(cx);                                     // ax = lba / 18, dx = lba % 18
        a.mov(cl, dl);
        a.inc(cl);                                     // sector 1..18
        a.xor(dx, dx);
        a.mov(bx, 2);
        a.div(bx);                                     // ax = cylinder, dx = head
        a.mov(ch, al);
        a.mov(dh, dl);
        a.mov(dl, __byte_ptr[BootVars]);
        a.xor(bx, bx);
        a.mov(ax, 0x0201);
        a.@int(0x13);
        a.jnc(a.F);
        a.dec(__byte_ptr[BootVars + 6]);
        a.jnz(retry);
        a.jmp(fail);
        a.AnonymousLabel();
        a.mov(ax, es);
        a.add(ax, 0x20);
        a.mov(es, ax);
        a.inc(__word_ptr[BootVars + 2]);
        a.dec(__word_ptr[BootVars + 4]);
        a.jnz(loop);
        // Fast A20, GDT, protected mode, far jump to the 32-bit stub.
        a.@in(al, (byte)0x92);
        a.or(al, 2);
        a.@out((byte)0x92, al);
        a.lgdt(__[GdtPointer]);
        a.mov(eax, cr0);
        a.or(eax, 1);
        a.mov(cr0, eax);
        a.db(0x66, 0xEA);                              // jmp far ptr16:32
        a.dd(Code);
        a.dw(CodeSelector);
        a.Label(ref fail);
        a.mov(al, (byte)'!');
        a.@out((byte)0xE9, al);
        a.hlt();
        var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), BootSector);
        var bytes = ms.ToArray();
        if (bytes.Length > 510)
            throw new InvalidOperationException("boot sector too large");
        var sector = new byte[512];
        bytes.CopyTo(sector, 0);
        sector[510] = 0x55;
        sector[511] = 0xAA;
        return sector;
    }

    private static (uint Start, uint GpHandler, uint FatalHandler, uint ExitHandler) AssembleHost(out byte[] code, out uint unused1, out uint unused2)
    {
        unused1 = unused2 = 0;
        var a = new Assembler(32);
        var putc = a.CreateLabel();
        var putHex = a.CreateLabel();
        var putSpace = a.CreateLabel();
        var putNl = a.CreateLabel();
        var gpHandler = a.CreateLabel();
        var fatal = a.CreateLabel();
        var exitHandler = a.CreateLabel();
        var nextCase = a.CreateLabel();
        var caseEnd = a.CreateLabel();
        var done = a.CreateLabel();
        var start = a.CreateLabel();

        a.Label(ref start);
        a.mov(ax, DataSelector);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(fs, ax);
        a.mov(gs, ax);
        a.mov(esp, StackTop);
        a.lidt(__[Idt + 0x100]);
        a.mov(al, (byte)'\n');
        a.@out((byte)0xE9, al);
        a.mov(al, (byte)'@');
        a.@out((byte)0xE9, al);

        // Copy machine frames to their addresses.
        {
            var loop = a.CreateLabel();
            var end = a.CreateLabel();
            a.mov(ebx, __dword_ptr[VarCopyList]);
            a.mov(edx, __dword_ptr[ebx]);
            a.add(ebx, 4);
            a.Label(ref loop);
            a.test(edx, edx);
            a.jz(end);
            a.mov(edi, __dword_ptr[ebx]);
            a.mov(esi, __dword_ptr[ebx + 4]);
            a.mov(ecx, 1024);
            a.cld();
            a.rep.movsd();
            a.add(ebx, 8);
            a.dec(edx);
            a.jmp(loop);
            a.Label(ref end);
        }

        // Paging: PSE identity map, then NE and PG.
        a.mov(eax, cr4);
        a.or(eax, 0x10);
        a.mov(cr4, eax);
        a.mov(eax, HostCr3);
        a.mov(cr3, eax);
        a.mov(eax, HostCr0);
        a.mov(cr0, eax);
        a.jmp(a.F);
        a.AnonymousLabel();

        // IA32_FEATURE_CONTROL: lock with VMXON outside SMX enabled unless already locked.
        a.mov(ecx, 0x3A);
        a.rdmsr();
        a.test(eax, 1);
        a.jnz(a.F);
        a.or(eax, 5);
        a.wrmsr();
        a.AnonymousLabel();

        // Log the capability MSRs 0x480..0x493 ("M index high low", or "m index" when RDMSR faults).
        {
            var loop = a.CreateLabel();
            var absent = a.CreateLabel();
            var next = a.CreateLabel();
            a.mov(esi, 0x480);
            a.Label(ref loop);
            a.mov(__dword_ptr[VarMsrFault], 0);
            a.mov(ecx, esi);
            a.rdmsr();
            a.cmp(__dword_ptr[VarMsrFault], 0);
            a.jne(absent);
            a.push(eax);
            a.push(edx);
            a.mov(al, (byte)'M');
            a.call(putc);
            a.call(putSpace);
            a.mov(eax, esi);
            a.call(putHex);
            a.call(putSpace);
            a.pop(eax);
            a.call(putHex);
            a.call(putSpace);
            a.pop(eax);
            a.call(putHex);
            a.call(putNl);
            a.jmp(next);
            a.Label(ref absent);
            a.mov(al, (byte)'m');
            a.call(putc);
            a.call(putSpace);
            a.mov(eax, esi);
            a.call(putHex);
            a.call(putNl);
            a.Label(ref next);
            a.inc(esi);
            a.cmp(esi, 0x494);
            a.jb(loop);
        }

        // CR4.VMXE, revision identifiers, VMXON.
        a.mov(eax, cr4);
        a.or(eax, 0x2000);
        a.mov(cr4, eax);
        a.mov(ecx, 0x480);
        a.rdmsr();
        a.and(eax, 0x7FFF_FFFF);
        a.mov(__dword_ptr[VmxonRegion], eax);
        a.vmxon(__qword_ptr[VarVmxonPtr]);
        a.jbe(fatal);
        a.mov(__dword_ptr[VarCaseIndex], 0);
        a.mov(__dword_ptr[VarCasePtr], Cases + 4);

        // Case loop.
        a.Label(ref nextCase);
        a.mov(eax, __dword_ptr[VarCaseIndex]);
        a.cmp(eax, __dword_ptr[Cases]);
        a.jae(done);
        a.mov(ecx, 0x480);
        a.rdmsr();
        a.and(eax, 0x7FFF_FFFF);
        a.mov(__dword_ptr[VmcsRegion], eax);
        a.vmclear(__qword_ptr[VarVmcsPtr]);
        a.vmptrld(__qword_ptr[VarVmcsPtr]);
        {
            var wloop = a.CreateLabel();
            var wdone = a.CreateLabel();
            var skipHigh = a.CreateLabel();
            var wok = a.CreateLabel();
            a.mov(esi, __dword_ptr[VarCasePtr]);
            a.mov(edi, __dword_ptr[esi]);
            a.add(esi, 4);
            a.Label(ref wloop);
            a.test(edi, edi);
            a.jz(wdone);
            a.mov(ebx, __dword_ptr[esi]);
            a.mov(eax, __dword_ptr[esi + 4]);
            a.vmwrite(ebx, eax);
            a.ja(wok);
            a.mov(al, (byte)'W');
            a.call(putc);
            a.call(putSpace);
            a.mov(eax, ebx);
            a.call(putHex);
            a.call(putNl);
            a.Label(ref wok);
            a.mov(edx, ebx);
            a.shr(edx, 13);
            a.and(edx, 3);
            a.cmp(edx, 1);
            a.jne(skipHigh);
            a.or(ebx, 1);
            a.mov(eax, __dword_ptr[esi + 8]);
            a.vmwrite(ebx, eax);
            a.ja(skipHigh);
            a.mov(al, (byte)'W');
            a.call(putc);
            a.call(putSpace);
            a.mov(eax, ebx);
            a.call(putHex);
            a.call(putNl);
            a.Label(ref skipHigh);
            a.add(esi, 12);
            a.dec(edi);
            a.jmp(wloop);
            a.Label(ref wdone);
            a.mov(__dword_ptr[VarCasePtr], esi);
        }
        a.mov(__dword_ptr[VarExitCount], 0);
        a.vmlaunch();
        {
            var invalid = a.CreateLabel();
            a.jc(invalid);
            a.mov(al, (byte)'F');
            a.call(putc);
            a.call(putSpace);
            a.mov(eax, __dword_ptr[VarCaseIndex]);
            a.call(putHex);
            a.call(putSpace);
            a.mov(ebx, (uint)VmcsField.VmInstructionError);
            a.vmread(eax, ebx);
            a.call(putHex);
            a.call(putNl);
            a.jmp(caseEnd);
            a.Label(ref invalid);
            a.mov(al, (byte)'I');
            a.call(putc);
            a.call(putSpace);
            a.mov(eax, __dword_ptr[VarCaseIndex]);
            a.call(putHex);
            a.call(putNl);
            a.jmp(caseEnd);
        }

        // VM-exit handler: "X case reason qualification gpa-high gpa-low gla length instr-info intr-info intr-error guest-rip".
        a.Label(ref exitHandler);
        a.mov(__dword_ptr[VarGuestEbx], ebx);
        a.mov(al, (byte)'X');
        a.call(putc);
        a.call(putSpace);
        a.mov(eax, __dword_ptr[VarCaseIndex]);
        a.call(putHex);
        foreach (var f in new[] { VmcsField.ExitReason, VmcsField.ExitQualification, VmcsField.GuestPhysicalAddressHigh, VmcsField.GuestPhysicalAddress,
                     VmcsField.GuestLinearAddress, VmcsField.VmExitInstructionLength, VmcsField.VmExitInstructionInformation,
                     VmcsField.VmExitInterruptionInformation, VmcsField.VmExitInterruptionErrorCode, VmcsField.GuestRip })
        {
            a.call(putSpace);
            a.mov(ebx, (uint)f);
            a.vmread(eax, ebx);
            a.call(putHex);
        }
        a.call(putNl);
        a.inc(__dword_ptr[VarExitCount]);
        a.cmp(__dword_ptr[VarExitCount], MaxExitsPerCase);
        a.jae(caseEnd);
        a.mov(ebx, (uint)VmcsField.ExitReason);
        a.vmread(edx, ebx);
        {
            var skipInstruction = a.CreateLabel();
            var eptResume = a.CreateLabel();
            var resume = a.CreateLabel();
            foreach (var r in SkippedExits)
            {
                a.cmp(edx, (uint)r);
                a.je(skipInstruction);
            }
            a.cmp(edx, (uint)VmxExitReason.EptViolation);
            a.je(eptResume);
            a.cmp(edx, (uint)VmxExitReason.ExceptionOrNmi);
            a.je(eptResume);
            a.jmp(caseEnd);
            a.Label(ref skipInstruction);
            a.mov(ebx, (uint)VmcsField.VmExitInstructionLength);
            a.vmread(ecx, ebx);
            a.mov(ebx, (uint)VmcsField.GuestRip);
            a.vmread(eax, ebx);
            a.add(eax, ecx);
            a.vmwrite(ebx, eax);
            a.jmp(resume);
            a.Label(ref eptResume);
            a.mov(ebx, (uint)VmcsField.GuestRip);
            a.mov(eax, __dword_ptr[VarGuestEbx]);
            a.vmwrite(ebx, eax);
            a.Label(ref resume);
            a.mov(ebx, __dword_ptr[VarGuestEbx]); // the guest continues with its EBX
            a.vmresume();
            a.mov(al, (byte)'R');
            a.call(putc);
            a.call(putSpace);
            a.mov(eax, __dword_ptr[VarCaseIndex]);
            a.call(putHex);
            a.call(putSpace);
            a.mov(ebx, (uint)VmcsField.VmInstructionError);
            a.vmread(eax, ebx);
            a.call(putHex);
            a.call(putNl);
        }

        // After the case: log each watched 8-byte word ("A case address high low") and step past the watch list.
        a.Label(ref caseEnd);
        {
            var wloop = a.CreateLabel();
            var wdone = a.CreateLabel();
            a.mov(esi, __dword_ptr[VarCasePtr]);
            a.mov(edi, __dword_ptr[esi]);
            a.add(esi, 4);
            a.Label(ref wloop);
            a.test(edi, edi);
            a.jz(wdone);
            a.mov(ebx, __dword_ptr[esi]);
            a.mov(al, (byte)'A');
            a.call(putc);
            a.call(putSpace);
            a.mov(eax, __dword_ptr[VarCaseIndex]);
            a.call(putHex);
            a.call(putSpace);
            a.mov(eax, ebx);
            a.call(putHex);
            a.call(putSpace);
            a.mov(eax, __dword_ptr[ebx + 4]);
            a.call(putHex);
            a.call(putSpace);
            a.mov(eax, __dword_ptr[ebx]);
            a.call(putHex);
            a.call(putNl);
            a.add(esi, 4);
            a.dec(edi);
            a.jmp(wloop);
            a.Label(ref wdone);
            a.mov(__dword_ptr[VarCasePtr], esi);
        }
        a.inc(__dword_ptr[VarCaseIndex]);
        a.jmp(nextCase);

        a.Label(ref done);
        a.mov(al, (byte)'D');
        a.call(putc);
        a.call(putNl);
        // Bochs shutdown port: writing "Shutdown" to 0x8900 ends the simulation.
        a.mov(dx, 0x8900);
        foreach (char ch in "Shutdown")
        {
            a.mov(al, (byte)ch);
            a.@out(dx, al);
        }
        a.cli();
        a.hlt();

        // #GP handler: RDMSR of an unimplemented MSR; flag it and skip the 2-byte instruction.
        a.Label(ref gpHandler);
        a.add(esp, 4);
        a.mov(__dword_ptr[VarMsrFault], 1);
        a.add(__dword_ptr[esp], 2);
        a.iretd();

        // Any other exception or a failed VMXON: log and stop.
        a.Label(ref fatal);
        a.mov(al, (byte)'!');
        a.call(putc);
        a.call(putNl);
        a.jmp(done);

        // putc: AL to port 0xE9. The first character of a line is preceded by the '@' marker.
        a.Label(ref putc);
        a.@out((byte)0xE9, al);
        a.ret();
        a.Label(ref putSpace);
        a.push(eax);
        a.mov(al, (byte)' ');
        a.@out((byte)0xE9, al);
        a.pop(eax);
        a.ret();
        a.Label(ref putNl);
        a.push(eax);
        a.mov(al, (byte)'\n');
        a.@out((byte)0xE9, al);
        a.mov(al, (byte)'@');
        a.@out((byte)0xE9, al);
        a.pop(eax);
        a.ret();
        // putHex: EAX as 8 hex digits.
        a.Label(ref putHex);
        a.pushad();
        a.mov(edx, eax);
        a.mov(ecx, 8);
        {
            var loop = a.CreateLabel();
            var digit = a.CreateLabel();
            a.Label(ref loop);
            a.rol(edx, 4);
            a.mov(al, dl);
            a.and(al, 0xF);
            a.add(al, (byte)'0');
            a.cmp(al, (byte)'9');
            a.jbe(digit);
            a.add(al, 7);
            a.Label(ref digit);
            a.@out((byte)0xE9, al);
            a.dec(ecx);
            a.jnz(loop);
        }
        a.popad();
        a.ret();

        var ms = new MemoryStream();
        var result = a.Assemble(new StreamCodeWriter(ms), Code, BlockEncoderOptions.ReturnNewInstructionOffsets);
        code = ms.ToArray();
        return ((uint)result.GetLabelRIP(start), (uint)result.GetLabelRIP(gpHandler), (uint)result.GetLabelRIP(fatal), (uint)result.GetLabelRIP(exitHandler));
    }
}
