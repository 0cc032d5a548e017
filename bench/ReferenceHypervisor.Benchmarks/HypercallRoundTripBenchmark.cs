using BenchmarkDotNet.Attributes;
using Iced.Intel;
using VmmKit.ReferenceHypervisor;
using VmmKit.ReferenceHypervisor.Demo;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Benchmarks;

/// <summary>
/// The cost of one hypercall round trip on the emulated processor: the guest's call into the
/// hypercall page, VMCALL exit, register marshalling, dispatch of xen_version(XENVER_version),
/// VMRESUME, and the return — plus the few guest instructions of the loop around it.
/// </summary>
[MemoryDiagnoser]
public class HypercallRoundTripBenchmark
{
    private const int CallsPerInvoke = 10_000;
    private const uint Load = 0x100000, HypercallPage = Load + 0x1000;
    private Machine _machine = null!;
    private VirtualCpu _vcpu = null!;

    [GlobalSetup]
    public void Setup()
    {
        _machine = new Machine(64 << 20, ProcessorProviders.CreateDefault());
        if (!_machine.TryCreateDomain(new DomainConfig("bench", BuildGuest(), 16 << 20), out var domain, out string error))
            throw new InvalidOperationException(error);
        _vcpu = domain!.Vcpus[0];
        _vcpu.RunSlice();       // prologue: install the hypercall page, then HLT
    }

    [GlobalCleanup]
    public void Cleanup() => _machine.Dispose();

    /// <summary>Runs the guest through <see cref="CallsPerInvoke"/> hypercalls (until its next HLT).</summary>
    [Benchmark(OperationsPerInvoke = CallsPerInvoke)]
    public int XenVersionHypercall()
    {
        _vcpu.IsBlocked = false;
        return (int)_vcpu.RunSlice();
    }

    /// <summary>wrmsr(hypercall page); hlt; then forever: 10,000 x xen_version(XENVER_version); hlt.</summary>
    private static byte[] BuildGuest()
    {
        var a = new Assembler(32);
        Label again = a.CreateLabel(), loop = a.CreateLabel();
        a.mov(esp, Load + 0x4000);
        a.mov(ecx, 0x40000000);
        a.mov(eax, HypercallPage);
        a.xor(edx, edx);
        a.wrmsr();
        a.sti();
        a.hlt();
        a.Label(ref again);
        a.mov(edi, CallsPerInvoke);
        a.Label(ref loop);
        a.xor(ebx, ebx);
        a.xor(ecx, ecx);
        a.mov(eax, HypercallPage + (17 * 32));
        a.call(eax);
        a.dec(edi);
        a.jnz(loop);
        a.hlt();
        a.jmp(again);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load);
        return Elf32ImageWriter.Write(Load, stream.ToArray(), 0x4000, Load);
    }
}
