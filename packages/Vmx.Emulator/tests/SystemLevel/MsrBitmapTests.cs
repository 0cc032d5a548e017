using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>MsrBitmap.ProcessorStatePassThrough: the kernel's SYSCALL/SWAPGS MSRs stay in the processor, others exit.</summary>
public unsafe class MsrBitmapTests
{
    [Fact]
    public void Processor_state_msrs_pass_through_and_others_exit()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.mov(ecx, 0xC000_0082); a.mov(eax, 0x1234); a.xor(edx, edx); a.wrmsr();
            a.rdmsr(); a.mov(ebx, eax);
            a.mov(ecx, 0x1B); a.rdmsr();  // APIC base: exits
            a.hlt();
        });
        // The bitmap lives in guest RAM's backing frames here for convenience (any machine page works).
        g.Write(0x90000, MsrBitmap.ProcessorStatePassThrough());
        ulong machine = (ulong)g.First.Value * 4096 + 0x90000;
        g.Vmcs.Write(VmcsField.MsrBitmapsAddress, machine);
        g.SetControl(VmcsField.PrimaryProcessorBasedVmExecutionControls, (ulong)PrimaryProcessorBasedControls.UseMsrBitmaps);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Rdmsr, e.Reason);
        Assert.Equal(0x1BUL, g.Cpu.Registers.Rcx);
        Assert.Equal(0x1234UL, g.Cpu.Registers.Rbx);
    }
}
