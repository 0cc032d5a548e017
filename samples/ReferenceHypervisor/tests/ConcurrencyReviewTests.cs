using System.Runtime.InteropServices;
using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Waits between vCPU threads on the threaded scheduler that a hostile guest can close into a circle: a vCPU that waits
/// for a sibling inside its slice must do the work the sibling waits for meanwhile, or both wait forever (and with a
/// control domain, every domain stops: the world stop waits for their gates).
/// </summary>
public sealed class ConcurrencyReviewTests
{
    private const uint Load = 0x100000;
    private const uint ApCode = Load + 0x3000, Parked = Load + 0x3800;
    private const uint Context = 0x9100, ApResult = 0x9000;
    private const uint ApicPage = 0xFEE0_0000;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A domain of two vCPUs on the threaded scheduler: vCPU 0 runs <paramref name="bsp"/> then halts with interrupts
    /// off; vCPU 1 is started by VCPUOP_initialise/VCPUOP_up (flat 32-bit, paging off) at <paramref name="ap"/>.
    /// </summary>
    private static (Machine Machine, Domain Domain) Build(Action<Assembler> bsp, Action<Assembler> ap)
    {
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault())
        {
            MaxInstructionsPerVcpu = 50_000_000,
            Scheduling = SchedulerMode.Threaded,
        };
        var a = new Assembler(32);
        a.mov(esp, Load + 0x2000);
        bsp(a);
        a.cli();
        a.hlt();
        Assert.True(machine.TryCreateDomain(new DomainConfig("review", Elf32ImageWriter.Write(Load, Assemble(a, Load), 0x8000, Load), 8 << 20,
            Vcpus: 2), out var d, out string e), e);
        var apCode = new Assembler(32);
        ap(apCode);
        apCode.cli();
        apCode.hlt();
        Assert.True(d!.Physical.TryWrite(new GuestPhysicalAddress(ApCode), Assemble(apCode, ApCode), out _));
        var parked = new Assembler(32);
        parked.cli();
        parked.hlt();
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Parked), Assemble(parked, Parked), out _));

        var m = new GuestPage();
        MemoryMarshal.Write(m.Bytes, Flat32(ApCode));
        Assert.Equal(0, CallVcpuOp(machine, d.Vcpus[0], m, VcpuOp.Initialise, 1));
        Assert.Equal(0, CallVcpuOp(machine, d.Vcpus[0], m, VcpuOp.Up, 1));
        return (machine, d);
    }

    /// <summary>A <c>vcpu_hvm_context</c> for flat 32-bit protected mode, paging off, at <paramref name="eip"/>.</summary>
    private static VcpuHvmContext Flat32(uint eip) => new()
    {
        Mode = VcpuHvmContext.Mode32,
        X86_32 = new VcpuHvmX86_32
        {
            Eip = eip, Esp = Load + 0x6000, Eflags = 2, Cr0 = 0x11,
            CsLimit = 0xFFFFF, DsLimit = 0xFFFFF, SsLimit = 0xFFFFF, EsLimit = 0xFFFFF, TrLimit = 0x67,
            CsAr = 0xC9B, DsAr = 0xC93, SsAr = 0xC93, EsAr = 0xC93, TrAr = 0x8B,
        },
    };

    private static long CallVcpuOp(Machine machine, VirtualCpu caller, GuestPage memory, VcpuOp op, ulong vcpuid)
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.VcpuOp, Rdi = (ulong)op, Rsi = vcpuid };
        machine.Hypercalls.Dispatch(caller, ref regs, GuestX86Mode.Long64, 0, memory);
        return (long)regs.Rax;
    }

    private static byte[] Assemble(Assembler a, uint at)
    {
        var s = new MemoryStream();
        a.Assemble(new StreamCodeWriter(s), at);
        return s.ToArray();
    }

    private static uint ReadGuest(Domain d, uint address)
    {
        Assert.True(d.Physical.TryRead(new GuestPhysicalAddress(address), out uint value));
        return value;
    }

    [Fact]
    public void A_vcpu_initialising_a_sibling_that_waits_for_it_with_an_init_does_not_hang_the_domain()
    {
        // vCPU 0 sends INIT to all including itself: the bus delivers to vCPU 0 first (it goes down and is no longer
        // initialised, at once, on its own thread), then posts the INIT to vCPU 1 and waits, inside its slice, for vCPU 1's
        // thread to do it. vCPU 1 is meanwhile inside VCPUOP_initialise of vCPU 0: it finds vCPU 0 not initialised and waits
        // for vCPU 0's slice to end. A wait that did not do the INIT posted to it waited for a vCPU that waited for it.
        var (machine, d) = Build(
            bsp => bsp.mov(__dword_ptr[ApicPage + 0x300], 0x8C500u),   // ICR low: INIT, level assert, all including self
            ap =>
            {
                ap.mov(eax, (uint)HypercallNumber.VcpuOp);
                ap.mov(ebx, (uint)VcpuOp.Initialise);
                ap.xor(ecx, ecx);                                      // vcpuid 0
                ap.mov(edx, Context);
                ap.vmcall();
                ap.mov(__dword_ptr[ApResult], eax);
            });
        var context = Flat32(Parked);
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(Context), MemoryMarshal.AsBytes(new ReadOnlySpan<VcpuHvmContext>(in context)), out _));
        Assert.True(d.Physical.TryWrite(new GuestPhysicalAddress(ApResult), 0xDEADu));
        var vcpu0 = d.Vcpus[0];
        using var apInCall = new ManualResetEventSlim(false);
        machine.Trace = (vcpu, exit) =>
        {
            if (vcpu.Id == 1 && exit.Reason == VmxExitReason.Vmcall)
            {
                // vCPU 1 is at its VMCALL: vCPU 0 may send; the call goes on once vCPU 0 has taken its own INIT.
                apInCall.Set();
                var waited = System.Diagnostics.Stopwatch.StartNew();
                while (vcpu0.IsInitialised && waited.Elapsed < Limit)
                    Thread.Yield();
            }
            else if (vcpu.Id == 0 && exit.Reason == VmxExitReason.EptViolation)
            {
                apInCall.Wait(Limit);   // the ICR write waits until vCPU 1 is inside its call
            }
        };

        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(60), "VCPUOP_initialise against an INIT");   // leaks the machine on a hang
        using var owned = machine;
        Assert.True(apInCall.IsSet);
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);   // both vCPUs took their INIT: all down
        Assert.Equal(0xDEADu, ReadGuest(d, ApResult));              // vCPU 1 took its INIT inside the call: it never got back to the guest
        Assert.True(vcpu0.IsInitialised);                           // the call loaded vCPU 0's context once its slice was over
    }
}
