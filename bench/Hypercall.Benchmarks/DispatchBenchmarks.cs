using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Benchmarks;

/// <summary>
/// One <see cref="HypercallDispatcher{TCaller}.Dispatch"/>: read the registers of the caller's ABI,
/// look the handler up, ask the policy, run a trivial handler, write RAX. The VM exit and entry
/// around it are measured by the reference hypervisor's round-trip benchmark.
/// </summary>
[MemoryDiagnoser]
public unsafe class DispatchBenchmarks
{
    private sealed class Vcpu
    {
        public bool Privileged { get; init; }
    }

    private sealed class ArrayMemory(int size) : IGuestVirtualMemory
    {
        public readonly byte[] Bytes = new byte[size];

        public bool TryRead(ulong gva, Span<byte> destination)
        {
            if (gva > (ulong)Bytes.Length || (ulong)destination.Length > (ulong)Bytes.Length - gva)
                return false;
            Bytes.AsSpan((int)gva, destination.Length).CopyTo(destination);
            return true;
        }

        public bool TryWrite(ulong gva, ReadOnlySpan<byte> source)
        {
            if (gva > (ulong)Bytes.Length || (ulong)source.Length > (ulong)Bytes.Length - gva)
                return false;
            source.CopyTo(Bytes.AsSpan((int)gva));
            return true;
        }
    }

    private static long Version(ref HypercallCall<Vcpu> call) => 0x0004_0011;

    private static long GetFeatures(ref HypercallCall<Vcpu> call)
    {
        ulong gva = call.Argument(1);
        if (!call.TryCopyFromGuest(gva, out XenFeatureInfo info))
            return XenErrno.EFAULT.Negated();
        info.Submap = 1u << (int)XenFeature.AutoTranslatedPhysmap;
        return call.TryCopyToGuest(gva, in info) ? 0 : XenErrno.EFAULT.Negated();
    }

    private readonly Vcpu _vcpu = new();
    private readonly ArrayMemory _memory = new(4096);
    private HypercallDispatcher<Vcpu> _plain = null!;
    private HypercallDispatcher<Vcpu> _withPolicy = null!;

    [GlobalSetup]
    public void Setup()
    {
        _plain = new HypercallDispatcher<Vcpu>();
        _plain.Register(HypercallNumber.ConsoleIo, &Version);
        _plain.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Version, &Version);
        _plain.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.GetFeatures, &GetFeatures);
        _plain.Register(HypercallNumber.SchedOp, (ref HypercallCall<Vcpu> call) => 0);

        _withPolicy = new HypercallDispatcher<Vcpu> { Policy = new HypercallPrivilegePolicy<Vcpu>(v => v.Privileged) };
        _withPolicy.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Version, &Version);

        for (int i = 0; i < 8; i++)
            MemoryMarshal.Write(_memory.Bytes.AsSpan(0x100 + i * 64), new MulticallEntry { Op = (ulong)HypercallNumber.ConsoleIo });
    }

    [Benchmark(Baseline = true, Description = "whole-hypercall handler (fn ptr), 64-bit")]
    public ulong WholeHandler64()
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.ConsoleIo };
        _plain.Dispatch(_vcpu, ref regs, GuestX86Mode.Long64, 0, _memory);
        return regs.Rax;
    }

    [Benchmark(Description = "sub-op handler: xen_version(XENVER_version), 64-bit")]
    public ulong SubOp64()
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.XenVersion, Rdi = 0 };
        _plain.Dispatch(_vcpu, ref regs, GuestX86Mode.Long64, 0, _memory);
        return regs.Rax;
    }

    [Benchmark(Description = "sub-op handler, 32-bit caller")]
    public ulong SubOp32()
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.XenVersion, Rbx = 0 };
        _plain.Dispatch(_vcpu, ref regs, GuestX86Mode.Protected32, 0, _memory);
        return regs.Rax;
    }

    [Benchmark(Description = "sub-op handler + privilege policy")]
    public ulong SubOpWithPolicy()
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.XenVersion, Rdi = 0 };
        _withPolicy.Dispatch(_vcpu, ref regs, GuestX86Mode.Long64, 0, _memory);
        return regs.Rax;
    }

    [Benchmark(Description = "delegate handler")]
    public ulong DelegateHandler()
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.SchedOp };
        _plain.Dispatch(_vcpu, ref regs, GuestX86Mode.Long64, 0, _memory);
        return regs.Rax;
    }

    [Benchmark(Description = "XENVER_get_features: 8-byte copy in + out")]
    public ulong GuestCopy()
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.XenVersion, Rdi = 6, Rsi = 0x80 };
        _plain.Dispatch(_vcpu, ref regs, GuestX86Mode.Long64, 0, _memory);
        return regs.Rax;
    }

    [Benchmark(Description = "unregistered number (-ENOSYS)")]
    public ulong Enosys()
    {
        var regs = new HypercallRegisters { Rax = 60 };
        _plain.Dispatch(_vcpu, ref regs, GuestX86Mode.Long64, 0, _memory);
        return regs.Rax;
    }

    [Benchmark(Description = "multicall of 8 entries")]
    public ulong Multicall8()
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Multicall, Rdi = 0x100, Rsi = 8 };
        _plain.Dispatch(_vcpu, ref regs, GuestX86Mode.Long64, 0, _memory);
        return regs.Rax;
    }
}
