using Iced.Intel;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>HLT and SCHEDOP_block with no event source, on tiny Iced-assembled guests.</summary>
public class HaltTests
{
    private const uint Load = 0x100000;

    private static Domain Run(Action<Assembler> body)
    {
        var a = new Assembler(32);
        a.mov(esp, Load + 0x4000);
        body(a);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load);
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault());
        Assert.True(machine.TryCreateDomain(new DomainConfig("t", Elf32ImageWriter.Write(Load, stream.ToArray(), 0x4000, Load), 8 << 20), out var d, out string e), e);
        machine.Run();
        return d!;
    }

    [Fact]
    public void Hlt_with_interrupts_disabled_powers_the_domain_off_as_xen_does()
    {
        var d = Run(a => { a.cli(); a.hlt(); });
        Assert.Equal(DomainState.Shutdown, d.State);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);
    }

    [Fact]
    public void Hlt_with_interrupts_enabled_and_nothing_to_wake_it_is_crashed_at_the_end_of_the_run()
    {
        var d = Run(a => { a.sti(); a.hlt(); a.ud2(); });
        Assert.Equal(DomainState.Crashed, d.State);
        Assert.Contains("nothing can wake it", d.CrashReport);
    }

    [Fact]
    public void Sched_op_block_without_events_is_crashed_at_the_end_of_the_run()
    {
        var d = Run(a =>
        {
            a.mov(ecx, 0x40000000);
            a.mov(eax, Load + 0x2000);
            a.xor(edx, edx);
            a.wrmsr();
            a.mov(ebx, 1);                              // SCHEDOP_block
            a.xor(ecx, ecx);
            a.mov(eax, Load + 0x2000 + (29 * 32));
            a.call(eax);
            a.ud2();
        });
        Assert.Equal(DomainState.Crashed, d.State);
        Assert.Contains("blocked", d.CrashReport);
    }
}
