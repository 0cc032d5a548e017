using VmmKit.Ept;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator;

/// <summary>
/// A software x86 processor implementing <see cref="IVirtualProcessor"/>: <see cref="Run"/> loads the guest state
/// from a VMCS, executes in VMX non-root semantics until an exit condition the VMCS asks for, and stores the guest
/// state and the exit-information fields back, like VMLAUNCH/VMRESUME returning to the host.
/// </summary>
/// <remarks>
/// Exits: CPUID, VMCALL, INVD, triple fault and EPT violations/misconfigurations always; HLT with "HLT exiting" (without
/// it HLT enters the HLT activity state: an armed preemption timer then expires at once, otherwise the processor sleeps
/// until <see cref="RequestExit"/>); I/O per "unconditional I/O exiting" or the I/O bitmaps; RDMSR/WRMSR per the MSR
/// bitmaps (or always without them; MSRs let through are handled inside: EFER, STAR, LSTAR, CSTAR, FMASK, FS/GS/
/// KERNEL_GS base, TSC_AUX, SYSENTER_*, PAT, TSC); MOV CR per the CR0/CR4 masks and shadows and CR3/CR8 load/store
/// exiting; RDTSC/RDTSCP, INVLPG/INVPCID, MOV DR, PAUSE, WBINVD, LGDT/LIDT/SGDT/SIDT per their controls; exceptions
/// per the exception bitmap (and PFEC mask/match for #PF; INT3/INTO as software exceptions); interrupt- and NMI-window
/// exiting; external-interrupt exiting for <see cref="RequestExit"/>; the VMX-preemption timer.
/// Time is deterministic: the TSC advances by exactly one per instruction retired (a REP string iteration counts as
/// one), scaled by the TSC multiplier and offset when the controls ask, nominally <see cref="TscFrequencyHz"/>; the
/// VMX-preemption timer counts down once per instruction retired.
/// VM entry: <see cref="Run"/> is VMLAUNCH on a VMCS whose launch state is clear and VMRESUME on a launched one. It
/// performs the VM-entry checks of SDM Vol. 3C chapter 27 (<see cref="VmEntryChecks"/> with
/// <see cref="EmulatedCapabilities"/>): a bad control or host-state field returns VMfailValid with the VM-instruction
/// error (7 or 8) written to the VMCS, a bad guest state a VM-entry failure (exit reason 33 with bit 31 set); the guest
/// does not run. After the checks pass, a VMLAUNCH marks the VMCS launched (§25.1). The host-state area must hold a
/// valid host: <see cref="EmulatedHostState.Default"/> is one.
/// Not thread-safe except <see cref="RequestExit"/>: one instance per virtual CPU.
/// </remarks>
public sealed unsafe partial class EmulatedProcessor : IVirtualProcessor, IDisposable
{
    /// <summary>
    /// The nominal frequency of the emulated TSC: it ticks once per retired guest instruction, and the processor reports
    /// 1 GHz (CPUID leaves 0x15/0x16 in a hypervisor's CPUID policy should say so). Guest time derived from the TSC is
    /// therefore instruction time, deterministic and independent of the host's speed.
    /// </summary>
    public const ulong TscFrequencyHz = 1_000_000_000;

    // SDM Vol. 3C §27.2: a 64-bit host (the VMCS's host-state area says which); MAXPHYADDR 52, as the emulated paging.
    private static readonly VmEntryChecks EntryChecks = new(EmulatedCapabilities.Create());
    private static readonly VmEntryEnvironment EntryEnvironment = new() { HostInIa32eMode = true, PhysicalAddressWidth = 52 };

    private readonly MachineMemory _memory;
    private readonly Core _core;
    private GuestRegisters _registers;
    private EptPointer _eptPointer;
    private Vmcs? _current;
    private PinBasedControls _pin;
    private PrimaryProcessorBasedControls _primary;
    private uint _exceptionBitmap;
    private uint _pfecMask, _pfecMatch;
    // The I/O bitmaps A and B and the MSR bitmap in machine memory, or null when outside it (then every access exits).
    private byte* _ioBitmapA, _ioBitmapB, _msrBitmap;
    private bool _disposed;
    private bool _halted;
    private readonly ManualResetEventSlim _kick = new(false);

    /// <summary>Creates a processor whose guest-physical memory is reached through EPT tables in <paramref name="memory"/>.</summary>
    public EmulatedProcessor(MachineMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _memory = memory;
        _core = new Core(new EptPageSource(new GuestPhysicalMemory(memory, default)));
        _core.IoExitFilter = IoExits;
        _core.MsrExitFilter = MsrExits;
    }

    /// <inheritdoc/>
    public ref GuestRegisters Registers => ref _registers;

    /// <inheritdoc/>
    public ulong InstructionsRetired => _core.S.InstructionsRetired;

    /// <summary>
    /// Completes an XSETBV that exited (exit reason 55, unconditional in VMX non-root operation, SDM Vol. 3C §26.1.2):
    /// writes EDX:EAX = <paramref name="value"/> to XCR<paramref name="index"/>. False means the guest gets #GP(0)
    /// (SDM Vol. 2 XSETBV: only XCR0, bit 0 set, no component outside x87 and SSE). The processor already raised #UD
    /// and the CPL check before exiting.
    /// </summary>
    public bool TrySetExtendedControlRegister(uint index, ulong value) => Fpu.ExtendedControlRegisters.TrySet(ref _core.S, index, value);

    /// <summary>
    /// Upper bound on instructions executed by one <see cref="Run"/> call when no preemption timer is armed, each event
    /// delivery counting as one (a guest can chain deliveries without retiring an instruction); 0 = unbounded.
    /// </summary>
    public ulong MaxInstructionsPerRun { get; set; }

    /// <inheritdoc/>
    public void InvalidateEpt(InveptType type, EptPointer eptPointer)
    {
        if (type == InveptType.AllContexts)
        {
            GuestPhysicalMemory.InvalidateAllContexts(_memory);
        }
        else if (_core.Pages is EptPageSource source && source.Memory.Pointer == eptPointer)
        {
            source.Memory.InvalidateSingleContext();
        }
        _core.FlushAll();
    }

    /// <inheritdoc/>
    public VmExit Run(Vmcs vmcs)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        return Enter(vmcs, resume: vmcs.LaunchState == VmcsLaunchState.Launched);
    }

    /// <summary>
    /// VMLAUNCH: like <see cref="Run"/> but always a launch, so a VMCS that is already launched fails with VMfailValid
    /// (VM-instruction error 4, "VMLAUNCH with non-clear VMCS", SDM Vol. 3C §27.1 and §31.4).
    /// </summary>
    /// <param name="vmcs">The VMCS to enter.</param>
    /// <returns>The VM exit, or the VMfailValid / VM-entry failure.</returns>
    public VmExit Launch(Vmcs vmcs)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        return Enter(vmcs, resume: false);
    }

    /// <summary>
    /// VMRESUME: like <see cref="Run"/> but always a resume, so a VMCS whose launch state is clear fails with VMfailValid
    /// (VM-instruction error 5, "VMRESUME with non-launched VMCS", SDM Vol. 3C §27.1 and §31.4).
    /// </summary>
    /// <param name="vmcs">The VMCS to enter.</param>
    /// <returns>The VM exit, or the VMfailValid / VM-entry failure.</returns>
    public VmExit Resume(Vmcs vmcs)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        return Enter(vmcs, resume: true);
    }

    private VmExit Enter(Vmcs vmcs, bool resume)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // SDM Vol. 3C §27.1-§27.3: the launch state, then the controls, the host state and the guest state decide whether
        // the guest runs. A failed entry leaves the launch state as it was (as Bochs does).
        VmEntryCheckResult check = EntryChecks.Check(vmcs, EntryEnvironment, resume);
        if (!check.Succeeded)
        {
            VmExit failure = check.ToVmExit();
            failure.WriteTo(vmcs);
            return failure;
        }
        vmcs.LaunchState = VmcsLaunchState.Launched;
        _current = vmcs;
        VmcsGuestState.Load(_core, vmcs, ref _registers);
        LoadControls(vmcs);
        var eptp = new EptPointer(vmcs.Read(VmcsField.EptPointer));
        if (eptp != _eptPointer || _core.Pages is not EptPageSource)
        {
            _eptPointer = eptp;
            _core.Pages = new EptPageSource(new GuestPhysicalMemory(_memory, eptp));
            _core.FlushAll();
        }
        // Without "enable VPID" (not offered) every VM entry invalidates the linear and combined mappings of VPID 0000H
        // (SDM Vol. 3C §28.3.3.1); guest-physical mappings (the EPT's translation cache) stay until INVEPT.
        _core.InvalidateLinearMappings();
        ulong retiredBefore = _core.S.InstructionsRetired;
        VmExit exit = Execute(vmcs);
        VmcsGuestState.Store(_core, vmcs);
        vmcs.Write(VmcsField.GuestActivityState, _halted ? 1UL : 0UL);
        vmcs.Write(VmcsField.GuestInterruptibilityState, _core.ShadowBits | (_core.NmiBlocked ? 8u : 0u));
        VmcsGuestState.SaveRegisters(_core, ref _registers);
        exit.WriteTo(vmcs);
        _current = null;
        EmulatorMetrics.Record(exit, _core.S.InstructionsRetired - retiredBefore);
        return exit;
    }

    private void LoadControls(Vmcs vmcs)
    {
        _pin = (PinBasedControls)vmcs.Read(VmcsField.PinBasedVmExecutionControls);
        _primary = (PrimaryProcessorBasedControls)vmcs.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls);
        _exceptionBitmap = (uint)vmcs.Read(VmcsField.ExceptionBitmap);
        _core.ExceptionBitmap = _exceptionBitmap;
        _pfecMask = (uint)vmcs.Read(VmcsField.PageFaultErrorCodeMask);
        _pfecMatch = (uint)vmcs.Read(VmcsField.PageFaultErrorCodeMatch);
        _core.RdtscExiting = (_primary & PrimaryProcessorBasedControls.RdtscExiting) != 0;
        _core.HltExiting = (_primary & PrimaryProcessorBasedControls.HltExiting) != 0;
        _core.ExternalInterruptExiting = (_pin & PinBasedControls.ExternalInterruptExiting) != 0;
        // SDM Vol. 3C §25.6.2: the secondary controls apply only with "activate secondary controls".
        var secondary = (_primary & PrimaryProcessorBasedControls.ActivateSecondaryControls) != 0
            ? (SecondaryProcessorBasedControls)vmcs.Read(VmcsField.SecondaryProcessorBasedVmExecutionControls) : 0;
        _core.DescriptorTableExiting = (secondary & SecondaryProcessorBasedControls.DescriptorTableExiting) != 0;
        _core.S.TscOffset = (_primary & PrimaryProcessorBasedControls.UseTscOffsetting) != 0 ? vmcs.Read(VmcsField.TscOffset) : 0;
        _core.TscScaling = (_primary & PrimaryProcessorBasedControls.UseTscOffsetting) != 0
            && (secondary & SecondaryProcessorBasedControls.UseTscScaling) != 0;
        _core.S.TscMultiplier = _core.TscScaling ? vmcs.Read(VmcsField.TscMultiplier) : 1UL << 48;
        // Control-register virtualization (SDM Vol. 3C §25.6.6, §26.1.3, §26.3).
        _core.Cr0GuestHostMask = vmcs.Read(VmcsField.Cr0GuestHostMask);
        _core.Cr0ReadShadow = vmcs.Read(VmcsField.Cr0ReadShadow);
        _core.Cr4GuestHostMask = vmcs.Read(VmcsField.Cr4GuestHostMask);
        _core.Cr4ReadShadow = vmcs.Read(VmcsField.Cr4ReadShadow);
        _core.Cr3LoadExiting = (_primary & PrimaryProcessorBasedControls.Cr3LoadExiting) != 0;
        _core.Cr3StoreExiting = (_primary & PrimaryProcessorBasedControls.Cr3StoreExiting) != 0;
        _core.Cr8LoadExiting = (_primary & PrimaryProcessorBasedControls.Cr8LoadExiting) != 0;
        _core.Cr8StoreExiting = (_primary & PrimaryProcessorBasedControls.Cr8StoreExiting) != 0;
        _core.Cr3TargetCount = (int)Math.Min(vmcs.Read(VmcsField.Cr3TargetCount), 4);
        for (int k = 0; k < 4; k++) _core.Cr3Targets[k] = vmcs.Read(VmcsField.Cr3TargetValue0 + (uint)(2 * k));
        bool unrestricted = (secondary & SecondaryProcessorBasedControls.UnrestrictedGuest) != 0;
        ulong cr0Fixed0 = EmulatedCapabilities.Msrs[VmxCapabilityMsr.Ia32VmxCr0Fixed0];
        _core.Cr0Fixed1Bits = unrestricted ? cr0Fixed0 & ~0x8000_0001UL : cr0Fixed0; // PE and PG are free with unrestricted guest
        _core.Cr4Fixed1Bits = EmulatedCapabilities.Msrs[VmxCapabilityMsr.Ia32VmxCr4Fixed0];
        _core.InvlpgExiting = (_primary & PrimaryProcessorBasedControls.InvlpgExiting) != 0;
        _core.MovDrExiting = (_primary & PrimaryProcessorBasedControls.MovDrExiting) != 0;
        _core.PauseExiting = (_primary & PrimaryProcessorBasedControls.PauseExiting) != 0;
        _core.WbinvdExiting = (secondary & SecondaryProcessorBasedControls.WbinvdExiting) != 0;
        _core.RdtscpEnabled = (secondary & SecondaryProcessorBasedControls.EnableRdtscp) != 0;
        _core.InvpcidEnabled = (secondary & SecondaryProcessorBasedControls.EnableInvpcid) != 0;
        // SDM Vol. 3C §25.6.4 (I/O bitmaps A for ports 0000-7FFF, B for 8000-FFFF) and §25.6.9 (MSR bitmaps): 4 KiB pages at
        // machine-physical addresses. The processor consults them at each I/O instruction and RDMSR/WRMSR, as hardware
        // does, so nothing is copied at entry. §25.11.4: software may change them only while no logical processor is in
        // VMX non-root operation with a VMCS that references them, so a change the host makes between exits is seen at
        // the next access after the entry. A bitmap outside machine memory reads as all ones: every access exits (fail safe).
        _ioBitmapA = BitmapPage(vmcs, VmcsField.IoBitmapAAddress, PrimaryProcessorBasedControls.UseIoBitmaps);
        _ioBitmapB = BitmapPage(vmcs, VmcsField.IoBitmapBAddress, PrimaryProcessorBasedControls.UseIoBitmaps);
        _msrBitmap = BitmapPage(vmcs, VmcsField.MsrBitmapsAddress, PrimaryProcessorBasedControls.UseMsrBitmaps);
    }

    private byte* BitmapPage(Vmcs vmcs, VmcsField address, PrimaryProcessorBasedControls control)
    {
        if ((_primary & control) == 0) return null;
        var frame = new MachineFrameNumber(vmcs.Read(address) >> 12); // page aligned: checked at VM entry (§27.2.1.1)
        return _memory.IsValid(frame) ? _memory.GetFramePointer(frame) : null;
    }

    private bool IoExits(ushort port, int size)
    {
        // SDM Vol. 3C §26.1.3: unconditional I/O exiting applies only when I/O bitmaps are off.
        if ((_primary & PrimaryProcessorBasedControls.UseIoBitmaps) == 0)
        {
            return (_primary & PrimaryProcessorBasedControls.UnconditionalIoExiting) != 0;
        }
        for (int k = 0; k < size; k++)
        {
            int p = port + k;
            if (p > 0xFFFF) return true; // wrap-around always exits
            byte* bitmap = p < 0x8000 ? _ioBitmapA : _ioBitmapB;
            if (bitmap == null || (bitmap[(p & 0x7FFF) >> 3] & (1 << (p & 7))) != 0) return true;
        }
        return false;
    }

    private bool MsrExits(uint msr, bool write)
    {
        // SDM Vol. 3C §25.6.9: read-low 0..1FFF at 0, read-high C0000000..C0001FFF at 1024, writes at +2048.
        if ((_primary & PrimaryProcessorBasedControls.UseMsrBitmaps) == 0) return true;
        int baseOffset;
        if (msr <= 0x1FFF) baseOffset = 0;
        else if (msr >= 0xC000_0000 && msr <= 0xC000_1FFF) baseOffset = 1024;
        else return true;
        if (write) baseOffset += 2048;
        uint bit = msr & 0x1FFF;
        return _msrBitmap == null || (_msrBitmap[baseOffset + (int)(bit >> 3)] & (1 << (int)(bit & 7))) != 0;
    }

    private VmExit Execute(Vmcs vmcs)
    {
        ref CpuState s = ref _core.S;
        // Interruptibility and activity state (SDM Vol. 3C §25.4.2, §28.3.2.5 / §28.7).
        uint interruptibility = (uint)vmcs.Read(VmcsField.GuestInterruptibilityState);
        _core.ShadowKind = interruptibility & 3;
        _core.ShadowAt = _core.ShadowKind != 0 ? s.InstructionsRetired : ulong.MaxValue;
        _core.NmiBlocked = (interruptibility & 8) != 0;
        _halted = vmcs.Read(VmcsField.GuestActivityState) == 1;
        var entryInfo = new InterruptionInformation((uint)vmcs.Read(VmcsField.VmEntryInterruptionInformation));
        if (entryInfo.IsValid)
        {
            vmcs.Write(VmcsField.VmEntryInterruptionInformation, entryInfo.Value & ~InterruptionInformation.ValidBit);
            if (entryInfo.Type is InterruptionType.SoftwareInterrupt or InterruptionType.PrivilegedSoftwareException or InterruptionType.SoftwareException)
            {
                s.Rip += vmcs.Read(VmcsField.VmEntryInstructionLength);
            }
            _halted = false; // an injected event wakes a halted processor (SDM Vol. 3C §28.7.1)
            // SDM Vol. 3C §28.6.1.1: injected software interrupts and software exceptions are delivered as INT n / INT3
            // would be (gate DPL checked against CPL, EXT = 0).
            bool software = entryInfo.Type is InterruptionType.SoftwareInterrupt or InterruptionType.SoftwareException;
            if (entryInfo.Type == InterruptionType.Nmi) _core.NmiBlocked = true;
            _core.ShadowAt = ulong.MaxValue;
            if (!_core.DeliverException(entryInfo.Vector, entryInfo.ErrorCodeValid, (uint)vmcs.Read(VmcsField.VmEntryExceptionErrorCode), software))
            {
                return DeliveryFailure();
            }
        }

        bool timer = (_pin & PinBasedControls.ActivateVmxPreemptionTimer) != 0;
        ulong timerValue = timer ? (uint)vmcs.Read(VmcsField.VmxPreemptionTimerValue) : 0;
        bool interruptWindow = (_primary & PrimaryProcessorBasedControls.InterruptWindowExiting) != 0;
        bool nmiWindow = (_primary & PrimaryProcessorBasedControls.NmiWindowExiting) != 0;
        _core.BeginRun();
        // Event deliveries retire no instruction, yet a guest can chain them forever (a handler whose fetch faults, on an
        // IST stack that resets each time): each delivery takes one unit of the preemption timer and of
        // MaxInstructionsPerRun, so such a run still ends. The timer counts time, not instructions (SDM Vol. 3C §26.5.1).
        ulong runStart = s.InstructionsRetired;
        ulong deliveries = 0;
        while (true)
        {
            if (_halted)
            {
                // HLT activity state: time passes without instructions, so an armed preemption timer expires now;
                // otherwise the processor sleeps until the host kicks it (RequestExit).
                if (timer) return TimerExpired(vmcs);
                _kick.Wait();
                _kick.Reset();
                _core.TakeExitRequest();
                return VmExit.Exit(VmxExitReason.ExternalInterrupt);
            }
            // SDM Vol. 3C §26.7.5/§26.7.6: the windows are checked before each instruction.
            uint shadow = _core.ShadowBits;
            if (interruptWindow && (s.Rflags & RflagsBits.IF) != 0 && shadow == 0) return VmExit.Exit(VmxExitReason.InterruptWindow);
            if (nmiWindow && !_core.NmiBlocked && (shadow & 2) == 0) return VmExit.Exit(VmxExitReason.NmiWindow);
            ulong used = s.InstructionsRetired - runStart + deliveries;
            if (!timer && MaxInstructionsPerRun != 0 && used >= MaxInstructionsPerRun) return VmExit.Exit(VmxExitReason.VmxPreemptionTimerExpired);
            ulong budget = timer ? timerValue : MaxInstructionsPerRun != 0 ? MaxInstructionsPerRun - used : ulong.MaxValue / 2;
            if (interruptWindow || nmiWindow) budget = Math.Min(budget, 1); // step until the window opens
            if (timer && timerValue == 0)
            {
                return TimerExpired(vmcs);
            }
            ulong before = s.InstructionsRetired;
            bool exhausted = _core.Execute(budget);
            PendingEvent e = _core.Event;
            if (!exhausted && e.Kind == EventKind.Halt)
            {
                // HLT without HLT exiting retires and enters the HLT activity state.
                s.Rip += (ulong)e.InstructionLength;
                s.InstructionsRetired++;
                _halted = true;
            }
            ulong ran = s.InstructionsRetired - before;
            if (timer)
            {
                timerValue -= Math.Min(ran, timerValue);
                if (((VmExitControls)vmcs.Read(VmcsField.VmExitControls) & VmExitControls.SaveVmxPreemptionTimerValue) != 0)
                {
                    vmcs.Write(VmcsField.VmxPreemptionTimerValue, timerValue);
                }
            }
            if (exhausted)
            {
                if (interruptWindow || nmiWindow) { if (!timer || timerValue != 0) continue; }
                if (timer) return VmExit.Exit(VmxExitReason.VmxPreemptionTimerExpired);
                if (MaxInstructionsPerRun != 0) return VmExit.Exit(VmxExitReason.VmxPreemptionTimerExpired);
                continue;
            }
            if (e.Kind == EventKind.Halt) continue;
            if (e.Kind == EventKind.VmExit)
            {
                return ExitFromEvent(in e);
            }
            // A guest exception: exit per the exception bitmap, else deliver through the guest IDT.
            if (ExceptionExits(e.Vector, e.ErrorCode))
            {
                // INT3/INTO (software exception) and INT1 (privileged software exception) report their type and length.
                uint type = e.InterruptionType != 0 ? (uint)e.InterruptionType : (uint)InterruptionType.HardwareException;
                uint info = (uint)e.Vector | (type << 8) | InterruptionInformation.ValidBit
                    | (e.HasErrorCode ? InterruptionInformation.ErrorCodeValidBit : 0);
                return VmExit.Exit(VmxExitReason.ExceptionOrNmi, e.Vector == ExceptionVector.PF ? e.GuestLinear : 0) with
                {
                    InterruptionInformation = info,
                    InterruptionErrorCode = e.HasErrorCode ? e.ErrorCode : 0,
                    InstructionLength = e.InterruptionType != 0 ? (uint)e.InstructionLength : 0,
                };
            }
            if (e.Vector == ExceptionVector.PF) s.Cr2 = e.GuestLinear;
            if (!_core.DeliverException(e.Vector, e.HasErrorCode, e.ErrorCode))
            {
                return DeliveryFailure();
            }
            deliveries++;
            if (timer)
            {
                timerValue -= Math.Min(1, timerValue);
                if (((VmExitControls)vmcs.Read(VmcsField.VmExitControls) & VmExitControls.SaveVmxPreemptionTimerValue) != 0)
                {
                    vmcs.Write(VmcsField.VmxPreemptionTimerValue, timerValue);
                }
            }
        }
    }

    private VmExit TimerExpired(Vmcs vmcs)
    {
        if (((VmExitControls)vmcs.Read(VmcsField.VmExitControls) & VmExitControls.SaveVmxPreemptionTimerValue) != 0)
        {
            vmcs.Write(VmcsField.VmxPreemptionTimerValue, 0);
        }
        return VmExit.Exit(VmxExitReason.VmxPreemptionTimerExpired);
    }

    /// <summary>
    /// Thread-safe: asks a <see cref="Run"/> in progress on another thread to return. With "external-interrupt exiting"
    /// the run ends at the next block boundary with <see cref="VmxExitReason.ExternalInterrupt"/> (no vector: "acknowledge
    /// interrupt on exit" is not supported); a processor halted in the HLT activity state wakes and exits the same way
    /// whatever the controls. The request stays pending until a run takes it. The hypervisor then injects the event
    /// it wanted to post (VM-entry interruption information, interrupt-window exiting while RFLAGS.IF = 0).
    /// </summary>
    public void RequestExit()
    {
        _core.RequestExit();
        _kick.Set();
    }

    private VmExit DeliveryFailure()
    {
        PendingEvent e = _core.Event;
        if (e.Kind == EventKind.VmExit) return ExitFromEvent(in e);
        return VmExit.Exit(VmxExitReason.TripleFault);
    }

    private bool ExceptionExits(int vector, uint errorCode)
    {
        bool bit = (_exceptionBitmap & (1u << vector)) != 0;
        if (vector != ExceptionVector.PF) return bit;
        // SDM Vol. 3C §26.2: #PF exits when (PFEC & mask) == match equals the bitmap bit.
        bool match = (errorCode & _pfecMask) == _pfecMatch;
        return bit == match;
    }

    private static VmExit ExitFromEvent(in PendingEvent e)
    {
        VmExit exit = VmExit.Exit(e.ExitReason, e.Qualification);
        return e.ExitReason switch
        {
            BasicExitReason.EptViolation => exit with { GuestPhysicalAddress = e.GuestPhysical, GuestLinearAddress = e.GuestLinear },
            BasicExitReason.EptMisconfiguration => exit with { GuestPhysicalAddress = e.GuestPhysical },
            _ => exit with { InstructionLength = (uint)e.InstructionLength, InstructionInformation = e.InstructionInformation },
        };
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _core.Dispose();
        _kick.Dispose();
    }
}
