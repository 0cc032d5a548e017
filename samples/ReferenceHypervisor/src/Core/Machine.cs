using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The emulated computer: machine memory, the processors, the hypercall table and the domains.
/// <see cref="Run"/> is the scheduler: round-robin over runnable vCPUs until every domain has
/// stopped. Crashing one domain never stops the machine.
/// </summary>
internal sealed class Machine : IDisposable
{
    /// <summary>Preemption-timer value for one time slice (the timer counts down at the TSC rate >> IA32_VMX_MISC[4:0]).</summary>
    public const uint SliceTimerValue = 1 << 20;

    private readonly List<Domain> _domains = [];
    private readonly IProcessorProvider _processors;
    private readonly bool _hasPreemptionTimer;
    private readonly MachineFrameNumber _msrBitmap;
    private ushort _nextDomainId = 1;

    /// <summary>Creates a machine with <paramref name="memoryBytes"/> of RAM whose vCPUs run on <paramref name="processors"/>.</summary>
    public Machine(ulong memoryBytes, IProcessorProvider processors)
    {
        _processors = processors;
        Memory = new MachineMemory(memoryBytes);
        Hypercalls = HypercallTable.Create();
        _hasPreemptionTimer = (processors.Capabilities.PinBased.MayBeOne & (uint)PinBasedControls.ActivateVmxPreemptionTimer) != 0;
        // One MSR bitmap for every vCPU (SDM Vol. 3C §25.6.9): the MSRs that are pure processor state (STAR, LSTAR,
        // KERNEL_GS_BASE, ...) stay inside the processor; every other RDMSR/WRMSR exits to MsrExit.
        _msrBitmap = Memory.AllocateFrame(FrameOwner.Hypervisor);
        MsrBitmap.ProcessorStatePassThrough().CopyTo(Memory.GetFrame(_msrBitmap));
    }

    /// <summary>The machine's RAM.</summary>
    public MachineMemory Memory { get; }

    /// <summary>The hypercall table shared by every domain.</summary>
    public HypercallDispatcher<VirtualCpu> Hypercalls { get; }

    /// <summary>VMX capabilities of the processors.</summary>
    public VmxCapabilities Capabilities => _processors.Capabilities;

    /// <summary>The domains, live and stopped.</summary>
    public IReadOnlyList<Domain> Domains => _domains;

    /// <summary>Called for every VM exit when set (the CLI's --trace).</summary>
    public Action<VirtualCpu, VmExit>? Trace { get; set; }

    /// <summary>Hypervisor messages (shutdowns, crash reports); stderr in the CLI.</summary>
    public Action<string>? Logger { get; set; }

    /// <summary>Crash a domain whose vCPU retired more instructions than this (0 = no limit).</summary>
    public ulong MaxInstructionsPerVcpu { get; set; }

    /// <summary>Builds a domain from <paramref name="config"/>; on failure returns false with the reason and creates nothing.</summary>
    public bool TryCreateDomain(DomainConfig config, out Domain? domain, out string error)
    {
        var d = new Domain(this, _nextDomainId, config);
        if (!d.TryBuild(config, out error))
        {
            d.Dispose();
            domain = null;
            return false;
        }

        _nextDomainId++;
        _domains.Add(d);
        domain = d;
        return true;
    }

    /// <summary>Runs every domain until none can run any more (all shut down, crashed, or blocked with nothing to wake them).</summary>
    public void Run()
    {
        while (true)
        {
            bool ranAny = false;
            foreach (var domain in _domains)
            {
                if (domain.State != DomainState.Running)
                    continue;
                foreach (var vcpu in domain.Vcpus)
                {
                    if (vcpu.IsBlocked || domain.State != DomainState.Running)
                        continue;
                    ranAny = true;
                    vcpu.RunSlice();
                    domain.UpdateBlockedState();
                }
            }

            if (ranAny)
                continue;

            // Nothing runnable: a blocked domain has no event source yet (no timers or event channels in this
            // machine), so it would wait forever. Xen would leave it blocked; we crash it to end the run.
            foreach (var domain in _domains.Where(d => d.State == DomainState.Blocked))
                domain.Crash(domain.Vcpus[0], "every vCPU is blocked and nothing can wake it (no timers or event channels yet)");
            return;
        }
    }

    /// <summary>A processor for a new vCPU.</summary>
    internal IVirtualProcessor CreateProcessor() => _processors.Create(Memory);

    /// <summary>Programs <paramref name="vcpu"/>'s VMCS for the PVH entry state at <paramref name="entry"/>.</summary>
    internal void ProgramPvhVmcs(VirtualCpu vcpu, uint entry)
    {
        var caps = Capabilities;
        var vmcs = vcpu.Vmcs;
        // Every I/O instruction and every RDMSR/WRMSR the MSR bitmap names exits; CPUID, VMCALL,
        // triple fault and EPT violations always do (SDM Vol. 3C §26.1.2, §26.2).
        VmcsBuilder.SetPvh32Guest(vmcs, caps, vcpu.Domain.Ept.Pointer, entry,
            PrimaryProcessorBasedControls.HltExiting | PrimaryProcessorBasedControls.UnconditionalIoExiting
                | PrimaryProcessorBasedControls.UseMsrBitmaps,
            SecondaryProcessorBasedControls.None,
            _hasPreemptionTimer ? PinBasedControls.ActivateVmxPreemptionTimer : PinBasedControls.None);
        vmcs.Write(VmcsField.MsrBitmapsAddress, _msrBitmap.Value << 12);
        VmcsBuilder.SetHostState(vmcs, new VmcsHostState
        {
            Cr0 = caps.AdjustCr0(VmcsBuilder.Cr0Pe | VmcsBuilder.Cr0Et | VmcsBuilder.Cr0Ne | VmcsBuilder.Cr0Wp | VmcsBuilder.Cr0Pg),
            Cr3 = 0x1000,
            Cr4 = caps.AdjustCr4(VmcsBuilder.Cr4Pae),
            CodeSelector = 0x08,
            DataSelector = 0x10,
            TaskSelector = 0x40,
            TrBase = 0xFFFF_8000_0000_2000,
            GdtrBase = 0xFFFF_8000_0000_1000,
            IdtrBase = 0xFFFF_8000_0000_3000,
            Rsp = 0xFFFF_8000_0001_0000,
            Rip = 0xFFFF_8000_0002_0000,
            Is64Bit = true,
        });
    }

    /// <summary>Loads the preemption timer before each VM entry so a guest that never exits still yields.</summary>
    internal void ArmSliceTimer(VirtualCpu vcpu)
    {
        if (_hasPreemptionTimer)
            vcpu.Vmcs.Write(VmcsField.VmxPreemptionTimerValue, SliceTimerValue);
    }

    /// <summary>True (and the domain crashed) when <paramref name="vcpu"/> ran past <see cref="MaxInstructionsPerVcpu"/>.</summary>
    internal bool InstructionBudgetExceeded(VirtualCpu vcpu)
    {
        if (MaxInstructionsPerVcpu == 0 || vcpu.InstructionsRetired <= MaxInstructionsPerVcpu)
            return false;
        vcpu.Domain.Crash(vcpu, $"instruction budget exhausted ({MaxInstructionsPerVcpu} instructions, --max-instructions)");
        return true;
    }

    /// <summary>Writes a hypervisor message.</summary>
    internal void Log(string message) => Logger?.Invoke(message);

    /// <summary>Releases every domain and the machine memory.</summary>
    public void Dispose()
    {
        foreach (var d in _domains)
            d.Dispose();
        _domains.Clear();
        Memory.Dispose();
    }
}
