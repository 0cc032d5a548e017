using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

/// <summary>The example in packages/Vmx.Emulator/README.md, kept compiling and passing.</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void Readme_example_runs_to_its_hlt_exit()
    {
        using var memory = new MachineMemory(16UL << 20);
        using var ept = new EptTables(memory, new FrameOwner(1));
        MachineFrameNumber ram = memory.AllocateContiguous(new FrameOwner(1), 256);            // 1 MiB of guest RAM
        ept.Map(new GuestPhysicalAddress(0), ram, 256, EptAccess.Read | EptAccess.Write | EptAccess.Execute);

        var asm = new Assembler(32);
        asm.mov(eax, 40); asm.add(eax, 2); asm.hlt();
        var code = new System.IO.MemoryStream();
        asm.Assemble(new StreamCodeWriter(code), 0x1000);
        code.ToArray().CopyTo(memory.GetFrame(new MachineFrameNumber(ram.Value + 1)));    // guest-physical 0x1000

        var vmcs = new Vmcs();
        VmcsBuilder.SetPvh32Guest(vmcs, EmulatedCapabilities.Create(), ept.Pointer, entryPoint: 0x1000);
        VmcsBuilder.SetHostState(vmcs, EmulatedHostState.Default);
        using var cpu = new EmulatedProcessor(memory);
        VmExit exit = cpu.Run(vmcs);

        Assert.Equal(VmxExitReason.Hlt, exit.Reason);
        Assert.Equal(42UL, cpu.Registers.Rax);
    }
}
