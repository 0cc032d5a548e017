using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reasons 16 and 51, RDTSC and RDTSCP, with the "RDTSC exiting" control (SDM Vol. 3C §26.1.3), which the threaded
/// scheduler sets: each vCPU runs on a host thread of its own, so the TSC a vCPU counts from its own retired instructions
/// runs apart from its siblings'; every read goes through the domain's one clock instead (<see cref="GuestTime.ReadTsc"/>),
/// as Xen handles these exits for an HVM domain whose TSC it emulates (xen/arch/x86/hvm/vmx/vmx.c EXIT_REASON_RDTSC(P), <c>hvm_rdtsc_intercept</c>). RDTSCP's
/// IA32_TSC_AUX is then kept here too: the MSR bitmap makes its reads and writes exit (<see cref="InterceptTscAux"/>).
/// </summary>
internal static class RdtscExit
{
    /// <summary>IA32_TSC_AUX (SDM Vol. 4, table 2-2).</summary>
    public const uint Ia32TscAux = 0xC000_0103;

    /// <summary>RDTSC: EDX:EAX = the TSC.</summary>
    public static ExitAction HandleRdtsc(VirtualCpu vcpu, in VmExit exit)
    {
        ulong tsc = GuestTime.ReadTsc(vcpu);
        ref var r = ref vcpu.Registers;
        r.Rax = (uint)tsc;
        r.Rdx = tsc >> 32;
        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    /// <summary>RDTSCP: EDX:EAX = the TSC, ECX = IA32_TSC_AUX.</summary>
    public static ExitAction HandleRdtscp(VirtualCpu vcpu, in VmExit exit)
    {
        HandleRdtsc(vcpu, in exit);
        vcpu.Registers.Rcx = vcpu.TscAux;
        return ExitAction.Resume;
    }

    /// <summary>
    /// Makes RDMSR and WRMSR of IA32_TSC_AUX exit in <paramref name="bitmap"/> (the MSR bitmap: read bits of
    /// C0000000H-C0001FFFH at byte 1024, write bits at byte 3072, SDM Vol. 3C §25.6.9), so that the value RDTSCP's exit
    /// returns is the one the guest wrote.
    /// </summary>
    public static void InterceptTscAux(Span<byte> bitmap)
    {
        int bit = (int)(Ia32TscAux & 0x1FFF);
        byte mask = (byte)(1 << (bit & 7));
        bitmap[1024 + (bit >> 3)] |= mask;
        bitmap[3072 + (bit >> 3)] |= mask;
    }
}
