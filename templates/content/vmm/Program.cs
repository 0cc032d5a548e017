using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator;
using static Iced.Intel.AssemblerRegisters;

// 1. Machine memory and the guest's EPT: 1 MiB of RAM at guest-physical 0 for domain 1.
using var memory = new MachineMemory(64UL << 20);
var domain = new FrameOwner(1);
using var ept = new EptTables(memory, domain);
MachineFrameNumber ram = memory.AllocateContiguous(domain, 256);
ept.Map(new GuestPhysicalAddress(0), ram, 256, EptAccess.ReadWriteExecute);

// 2. A guest: print "Hi!" on the debug port 0xE9, ask the hypervisor for CPUID leaf 0, halt.
var asm = new Assembler(32);
foreach (char ch in "Hi!\n") { asm.mov(al, (byte)ch); asm.@out((byte)0xE9, al); }
asm.xor(eax, eax); asm.cpuid(); asm.hlt();
var code = new MemoryStream();
asm.Assemble(new StreamCodeWriter(code), 0x1000);
var guest = new GuestPhysicalMemory(memory, ept.Pointer);
guest.TryWrite(new GuestPhysicalAddress(0x1000), code.ToArray(), out _);

// 3. A VMCS for a 32-bit flat guest with EPT; I/O and HLT exit to us.
var vmcs = new Vmcs();
VmcsBuilder.SetPvh32Guest(vmcs, EmulatedCapabilities.Create(), ept.Pointer, entryPoint: 0x1000,
    primary: PrimaryProcessorBasedControls.HltExiting | PrimaryProcessorBasedControls.UnconditionalIoExiting);
VmcsBuilder.SetHostState(vmcs, EmulatedHostState.Default);  // a valid host for the VM-entry checks

// 4. The run loop: one small handler per exit reason.
using var cpu = new EmulatedProcessor(memory);
while (true)
{
    VmExit exit = cpu.Run(vmcs);
    switch (exit.Reason)
    {
        case VmxExitReason.IoInstruction when exit.IoInstruction.Port == 0xE9:
            Console.Write((char)(byte)cpu.Registers.Rax);
            break;
        case VmxExitReason.Cpuid:
            cpu.Registers.Rax = 0; cpu.Registers.Rbx = 0x756E6547; cpu.Registers.Rdx = 0x49656E69; cpu.Registers.Rcx = 0x6C65746E;
            break;
        case VmxExitReason.Hlt:
            Console.WriteLine($"guest halted, EBX = 0x{cpu.Registers.Rbx:X8}");
            return;
        default:
            Console.WriteLine($"unexpected exit {exit}");
            return;
    }
    // The exiting instruction is complete: step over it (SDM Vol. 3C §28.2.5, VM-exit instruction length).
    vmcs.Write(VmcsField.GuestRip, vmcs.Read(VmcsField.GuestRip) + exit.InstructionLength);
}
