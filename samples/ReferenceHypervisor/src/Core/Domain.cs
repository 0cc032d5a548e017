using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.Boot;
using VmmKit.EventChannel;
using VmmKit.GrantTable;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A guest: its memory (machine frames owned by the domain, reachable only through its EPT), its
/// vCPUs, its console and its HVM parameters. Built by <see cref="Machine.TryCreateDomain"/>.
/// </summary>
internal sealed partial class Domain : IDisposable
{
    private readonly List<VirtualCpu> _vcpus = [];
    private readonly ulong[] _hvmParams = new ulong[(int)HvmParam.Count];
    private readonly List<(MachineFrameNumber First, ulong Count)> _frames = [];

    internal Domain(Machine machine, ushort id, DomainConfig config)
    {
        Machine = machine;
        Id = id;
        Name = config.Name;
        Owner = new FrameOwner(id);
        MemoryBytes = config.MemoryBytes;
        MaxVcpus = (uint)Math.Max(config.Vcpus, 1);
        Console = new DomainConsole(config.ConsoleLine);
        Io = Devices.DomainDevices.Create(Console);
        Ept = new EptTables(machine.Memory, Owner);
        Physical = new GuestPhysicalMemory(machine.Memory, Ept.Pointer);
    }

    /// <summary>The machine the domain runs on.</summary>
    public Machine Machine { get; }

    /// <summary>The domain id (domid_t).</summary>
    public ushort Id { get; }

    /// <summary>The configured name.</summary>
    public string Name { get; }

    /// <summary>The account machine frames are charged to.</summary>
    public FrameOwner Owner { get; }

    /// <summary>Guest RAM size in bytes (guest-physical 0 to this).</summary>
    public ulong MemoryBytes { get; private set; }

    /// <summary>Guest RAM in pages (what XENMEM_current_reservation reports).</summary>
    public ulong RamPages => MemoryBytes / Page.PageSize;

    /// <summary>The domain's guest-physical space (its EPT).</summary>
    public EptTables Ept { get; }

    /// <summary>Guest-physical access through <see cref="Ept"/>.</summary>
    public GuestPhysicalMemory Physical { get; }

    /// <summary>The console the guest prints to.</summary>
    public DomainConsole Console { get; }

    /// <summary>The domain's device buses: COM1 and the port 0xE9 debug console, both printing to <see cref="Console"/>.</summary>
    public VmmKit.Devices.IoManager Io { get; }

    /// <summary>The bus between the vCPUs' local APICs (IPIs).</summary>
    public VmmKit.Devices.ApicBus Apics { get; } = new();

    /// <summary>The vCPUs.</summary>
    public IReadOnlyList<VirtualCpu> Vcpus => _vcpus;

    /// <summary>Where the kernel was loaded and entered.</summary>
    public PvhBootInfo Boot { get; private set; }

    /// <summary>Life-cycle state (changed under <see cref="SyncRoot"/>: the vCPUs of the threaded scheduler change it from their own threads).</summary>
    public DomainState State
    {
        get => (DomainState)Volatile.Read(ref _state);
        private set => Volatile.Write(ref _state, (int)value);
    }

    private int _state = (int)DomainState.Running;

    /// <summary>
    /// Guards the life-cycle state of the domain and its vCPUs (<see cref="State"/>, up/down, INIT/SIPI) against the
    /// other vCPUs' threads in the threaded scheduler (<see cref="SchedulerMode.Threaded"/>).
    /// </summary>
    public object SyncRoot { get; } = new();

    private volatile bool _parking;

    /// <summary>
    /// Set while the threaded scheduler parks the domain's vCPU threads at their gates to look at them
    /// (<see cref="Machine"/>'s <c>Parked</c>): a thread starts no slice meanwhile, so the gates come free.
    /// </summary>
    internal bool Parking { get => _parking; set => _parking = value; }

    /// <summary>
    /// Serializes the changes to the domain's physmap that look at a slot and then change it (XENMEM_add_to_physmap,
    /// XENMEM_remove_from_physmap, populate_physmap) and the RAM frame records they update, as Xen's p2m lock
    /// (xen/arch/x86/mm/p2m.c, <c>p2m_lock</c>/<c>gfn_lock</c>) does: on the threaded scheduler two vCPUs of the domain
    /// make these hypercalls on their own host threads at once. The grant calls hold it too (HypercallTable's
    /// LockedGrantTableOp): to write those that change the domain's EPT (map, unmap, set_version) and those that write
    /// results through host pointers, so a slot looked at does not change under them; GNTTABOP_copy to read, so copies
    /// by several vCPUs run side by side. Every vCPU holds it to read while it is out of the guest
    /// (<see cref="VirtualCpu.RunSlice"/>), so no page a hypercall or an exit handler translated is removed and freed
    /// before its access. Taken before any lock of VmmKit.GrantTable, never inside one.
    /// </summary>
    public PhysmapLock PhysmapLock { get; } = new();

    /// <summary>
    /// Xen's <c>domain_lock</c> as <c>do_vcpu_op</c> holds it across <c>map_vcpu_info</c>: VCPUOP_register_vcpu_info's
    /// "registered once" check and its registration are one step, whichever vCPUs of the domain call at once.
    /// </summary>
    internal Lock VcpuInfoLock { get; } = new();

    private long _clock;

    /// <summary>
    /// The domain's shared clock: the highest TSC any of its vCPUs has published (<see cref="GuestTime.SyncWithDomain"/>).
    /// Each vCPU of the threaded scheduler moves its own TSC up to it at every VM entry, so every vCPU reads one clock,
    /// as on hardware with an invariant TSC; a TSC never moves back.
    /// </summary>
    public ulong Clock => (ulong)Volatile.Read(ref _clock);

    /// <summary>Raises <see cref="Clock"/> to <paramref name="tsc"/> when it is higher (an atomic maximum).</summary>
    public void PublishClock(ulong tsc) => ObserveClock(tsc);

    /// <summary>
    /// Raises <see cref="Clock"/> to <paramref name="tsc"/> when it is higher and returns the clock after that, in one
    /// atomic step (<see cref="GuestTime.ReadTsc"/>): of two calls, the later never returns less than the earlier.
    /// </summary>
    public ulong ObserveClock(ulong tsc)
    {
        long current = Volatile.Read(ref _clock);
        while ((ulong)current < tsc)
        {
            long seen = Interlocked.CompareExchange(ref _clock, (long)tsc, current);
            if (seen == current)
                return tsc;
            current = seen;
        }

        return (ulong)current;
    }

    /// <summary>The reason the guest gave to SCHEDOP_shutdown (valid in <see cref="DomainState.Shutdown"/>).</summary>
    public ShutdownReason ShutdownReason { get; private set; }

    /// <summary>The diagnostic dump written when the hypervisor crashed the domain.</summary>
    public string? CrashReport { get; private set; }

    /// <summary>The machine frame of the domain's shared_info page (mapped into the guest by XENMEM_add_to_physmap).</summary>
    public MachineFrameNumber SharedInfoFrame { get; private set; }

    /// <summary>
    /// The guest frame shared_info is mapped at, or null before XENMEM_add_to_physmap and once something else took the
    /// slot (a grant mapped over it replaces the entry, as Xen's M2P entry of the shared_info frame then goes).
    /// </summary>
    public ulong? SharedInfoGfn
    {
        get => _sharedInfoGfn is { } gfn && Ept.TryLookup(new GuestFrameNumber(gfn), out var frame, out _) && frame == SharedInfoFrame
            ? gfn : null;
        set => _sharedInfoGfn = value;
    }

    private ulong? _sharedInfoGfn;

    /// <summary>
    /// True when shared_info has the 32-bit layout: latched from the caller's mode when it sets HVM_PARAM_CALLBACK_IRQ
    /// (Xen's <c>hvm_latch_shinfo_size</c>); a new HVM domain starts with the 64-bit layout.
    /// </summary>
    public bool Has32BitSharedInfo { get; private set; }

    /// <summary>UTC time, in nanoseconds since 1970, at which the domain's system time was 0 (its creation).</summary>
    public ulong WallclockBaseNanoseconds { get; } = (ulong)(DateTimeOffset.UtcNow - DateTimeOffset.UnixEpoch).Ticks * 100;

    /// <summary>The domain's event channels (VmmKit.EventChannel); created by <see cref="TryBuild"/>.</summary>
    public EventChannelDomain Events { get; private set; } = null!;

    /// <summary>The domain's grant table (VmmKit.GrantTable); created by <see cref="TryBuild"/>.</summary>
    public GrantDomain Grants { get; private set; } = null!;

    /// <summary>The upcall vector of HVM_PARAM_CALLBACK_IRQ when its type is HVM_PARAM_CALLBACK_TYPE_VECTOR, else null.</summary>
    public byte? CallbackVector { get; private set; }

    /// <summary>Pages at the top of RAM the toolstack reserves: the ACPI tables, then the rings (console, then XenStore), as Xen's does.</summary>
    public const int SpecialPages = 3;

    /// <summary><c>offsetof(struct hvm_start_info, rsdp_paddr)</c> (xen/include/public/arch-x86/hvm/start_info.h).</summary>
    private const int StartInfoRsdpOffset = 32;

    /// <summary>
    /// Sets HVM_PARAM_CALLBACK_IRQ's delivery (Xen's <c>hvm_set_callback_via</c>, hvm/params.h): bits 63:56 are the type;
    /// only HVM_PARAM_CALLBACK_TYPE_VECTOR (2) is delivered here, with the vector in bits 7:0. The GSI, PCI INTx and
    /// PPI types need an interrupt controller this hypervisor does not emulate: they are stored and deliver nothing.
    /// </summary>
    public void SetCallbackVia(ulong value) => CallbackVector = value >> 56 == 2 ? (byte)value : null;

    /// <summary>Latches the shared_info layout from <paramref name="caller"/>'s mode and rewrites the wallclock in it.</summary>
    public void LatchSharedInfoSize(VirtualCpu caller)
    {
        Has32BitSharedInfo = caller.GuestMode != GuestX86Mode.Long64;
        Wallclock.Write(Machine.Memory.GetFrame(SharedInfoFrame), Has32BitSharedInfo, WallclockBaseNanoseconds);
        unsafe
        {
            Events.SetSharedInfo(Machine.Memory.GetFramePointer(SharedInfoFrame), Has32BitSharedInfo);
        }
    }

    /// <summary>The most vCPUs a domain may have: Xen's HVM_MAX_VCPUS (xen/include/public/hvm/hvm_info_table.h).</summary>
    public const int MaxGuestVcpus = 128;

    /// <summary>True while some vCPU can run.</summary>
    public bool IsRunnable => State == DomainState.Running && HasRunnableVcpu;

    /// <summary>True when some vCPU is up and not blocked.</summary>
    public bool HasRunnableVcpu
    {
        get
        {
            foreach (var v in _vcpus)
            {
                if (v.IsRunnable)
                    return true;
            }

            return false;
        }
    }

    /// <summary>Reads HVM parameter <paramref name="index"/> (already range-checked by the caller).</summary>
    public ulong GetHvmParam(HvmParam index) => _hvmParams[(int)index];

    /// <summary>Writes HVM parameter <paramref name="index"/>.</summary>
    public void SetHvmParam(HvmParam index, ulong value) => _hvmParams[(int)index] = value;

    /// <summary>Populates RAM, loads the kernel and creates vCPU 0 at the PVH entry state.</summary>
    internal bool TryBuild(DomainConfig config, out string error)
    {
        if (config.MemoryBytes == 0 || config.MemoryBytes % Page.PageSize != 0)
        {
            error = "guest memory must be a non-zero multiple of 4 KiB";
            return false;
        }

        if (config.Vcpus is < 1 or > MaxGuestVcpus)
        {
            error = $"a domain has 1 to {MaxGuestVcpus} vCPUs";
            return false;
        }

        if (!ElfImage.TryParse(config.Kernel, out var image, out error))
            return false;
        // xc_dom_parse_elf_kernel: a kernel requiring XENFEAT_dom0 is never built as a guest.
        if (image!.RequiresDom0)
        {
            error = "Kernel does not support unprivileged (DomU) operation";
            return false;
        }

        ulong pages = config.MemoryBytes / Page.PageSize;
        var memory = Machine.Memory;
        try
        {
            // RAM, the shared_info page, and room for the EPT's own tables.
            memory.SetLimit(Owner, pages + 1 + (pages / 256) + 16 + 8);
            PopulateRam(pages);
            SharedInfoFrame = memory.AllocateFrame(Owner);
            _frames.Add((SharedInfoFrame, 1));
            Wallclock.Write(memory.GetFrame(SharedInfoFrame), Has32BitSharedInfo, WallclockBaseNanoseconds);
        }
        catch (MachineMemoryExhaustedException e)
        {
            error = $"not enough machine memory for {config.MemoryBytes >> 20} MiB: {e.Message}";
            return false;
        }

        if (pages <= SpecialPages + 16)
        {
            error = "guest memory is too small";
            return false;
        }

        ulong usable = MemoryBytes - (SpecialPages * Page.PageSize);
        HvmMemmapTableEntry[] map =
        [
            new() { Addr = 0, Size = usable, Type = (uint)HvmMemmapType.Ram },
            new() { Addr = usable, Size = SpecialPages * Page.PageSize, Type = (uint)HvmMemmapType.Reserved },
        ];
        if (!PvhLoader.TryLoad(image!, config.Kernel, config.CommandLine, config.Modules ?? [], usable, map,
                new GuestPhysicalMemoryWriter(Physical), out var boot, out error))
            return false;
        Boot = boot;
        if (!TryCreateEventsAndGrants(config.XenStore, out error))
            return false;

        // The toolstack's ACPI tables (libxl for a PVH guest) in the first special page; hvm_start_info points at the RSDP.
        ulong acpiPfn = RamPages - SpecialPages;
        ulong rsdp = Cpu.AcpiTables.Build(memory.GetFrame(RamFrame(acpiPfn)), acpiPfn * Page.PageSize, config.Vcpus);
        ulong startInfo = boot.StartInfoAddress;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(
            memory.GetFrame(RamFrame(startInfo / Page.PageSize))[(int)(startInfo % Page.PageSize + StartInfoRsdpOffset)..], rsdp);

        Machine.ChooseScheduling(this);   // before the first VMCS is programmed: the controls differ
        var vcpu = new VirtualCpu(this, 0, Machine.CreateProcessor());
        Machine.ProgramPvhVmcs(vcpu, boot.Entry);
        Devices.VcpuApic.ProgramVmcs(vcpu);
        vcpu.Registers = default;
        vcpu.Registers.Rbx = boot.StartInfoAddress;   // PVH: EBX = &hvm_start_info
        _vcpus.Add(vcpu);
        AddSecondaryVcpus(config.Vcpus);
        return true;
    }

    /// <summary>
    /// Creates vCPUs 1 to <paramref name="count"/> - 1 as Xen's <c>vcpu_create</c> does for an HVM domain: down and not
    /// initialised (waiting for INIT/SIPI or VCPUOP_initialise), each with its local APIC on the domain's bus, and with the
    /// TSC of vCPU 0, so that every vCPU of the domain reads the same clock (Xen syncs an AP's TSC with the BSP's).
    /// </summary>
    internal void AddSecondaryVcpus(int count)
    {
        for (int id = _vcpus.Count; id < count; id++)
        {
            var vcpu = new VirtualCpu(this, id, Machine.CreateProcessor());
            Machine.ProgramPvhVmcs(vcpu, 0);
            Devices.VcpuApic.ProgramVmcs(vcpu);
            if (_vcpus.Count > 0)
                vcpu.Vmcs.Write(VmmKit.Vmx.VmcsField.TscOffset, GuestTime.Tsc(_vcpus[0]) - vcpu.InstructionsRetired);
            vcpu.IsUp = false;
            vcpu.IsInitialised = false;
            _vcpus.Add(vcpu);
        }
    }

    /// <summary>
    /// The toolstack's part of building a domain (libxl/libxc): the domain's event channels and grant table, then the
    /// console and XenStore rings, a page each at the top of RAM (reserved in the e820 map), with an unbound port each
    /// for the backend domain (domid 0), published in HVM_PARAM_CONSOLE_PFN/EVTCHN and HVM_PARAM_STORE_PFN/EVTCHN.
    /// The in-process Dom0 (src/Pv) then serves both: its console backend and its xenstored, each through the reserved grant
    /// the toolstack seeds for the ring.
    /// </summary>
    private unsafe bool TryCreateEventsAndGrants(bool xenStore, out string error)
    {
        var machine = Machine;
        Events = machine.Events.CreateDomain(new EventChannelDomainOptions { Id = Id, VcpuCount = (int)MaxVcpus, Upcall = machine.Upcall });
        Events.SetSharedInfo(machine.Memory.GetFramePointer(SharedInfoFrame), Has32BitSharedInfo);
        try
        {
            Grants = machine.Grants.CreateDomain(Id, Ept);
        }
        catch (MachineMemoryExhaustedException e)
        {
            error = $"no frame for the grant table: {e.Message}";
            return false;
        }

        ulong consolePfn = RamPages - 2, storePfn = RamPages - 1;
        foreach (ulong pfn in (ReadOnlySpan<ulong>)[consolePfn, storePfn])
            Machine.Memory.GetFrame(RamFrame(pfn)).Clear();
        var console = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = Machine.BackendDomainId };
        var store = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = Machine.BackendDomainId };
        long rc = machine.Events.AllocUnbound(Events, ref console);
        if (rc == 0)
            rc = machine.Events.AllocUnbound(Events, ref store);
        if (rc == 0)
            rc = machine.Pv is { } pv ? pv.AttachDomain(this, consolePfn, console.Port, storePfn, store.Port) : 0;
        if (rc != 0)
        {
            error = $"cannot set up the console and store event channels: {rc}";
            return false;
        }

        SetHvmParam(HvmParam.ConsolePfn, consolePfn);
        SetHvmParam(HvmParam.ConsoleEvtchn, console.Port);
        if (xenStore)
        {
            SetHvmParam(HvmParam.StorePfn, storePfn);
            SetHvmParam(HvmParam.StoreEvtchn, store.Port);
        }

        error = "";
        return true;
    }

    /// <summary>The machine frame behind RAM page <paramref name="pfn"/> as built (before the guest remaps anything).</summary>
    private MachineFrameNumber RamFrame(ulong pfn) =>
        // PopulateRam adds either one contiguous range or one frame per page in gfn order.
        _frames[0].Count > 1 ? new MachineFrameNumber(_frames[0].First.Value + pfn) : _frames[(int)pfn].First;

    private void PopulateRam(ulong pages)
    {
        var memory = Machine.Memory;
        if (memory.FreeFrames > pages + 64)
        {
            try
            {
                var first = memory.AllocateContiguous(Owner, pages);
                _frames.Add((first, pages));
                Ept.Map(new GuestPhysicalAddress(0), first, pages, EptAccess.ReadWriteExecute);
                return;
            }
            catch (MachineMemoryExhaustedException)
            {
                // Fragmented: fall back to single frames.
            }
        }

        for (ulong gfn = 0; gfn < pages; gfn++)
        {
            var frame = memory.AllocateFrame(Owner);
            _frames.Add((frame, 1));
            Ept.Map(new GuestPhysicalAddress(gfn * Page.PageSize), frame, 1, EptAccess.ReadWriteExecute);
        }
    }

    /// <summary>SCHEDOP_shutdown: the guest stops itself.</summary>
    public void Shutdown(ShutdownReason reason)
    {
        lock (SyncRoot)
        {
            if (State is DomainState.Shutdown or DomainState.Crashed)
                return;
            ShutdownReason = reason;
            State = DomainState.Shutdown;
        }

        StopVcpus();
        Console.Flush();
        Machine.Log($"d{Id} ({Name}) shut down: {ShutdownReasonName(reason)}");
        Machine.NotifyDomainException();
    }

    /// <summary>Crashes the domain (Xen's <c>domain_crash</c>): records a dump; the host and other domains carry on.</summary>
    public void Crash(VirtualCpu? vcpu, string why)
    {
        lock (SyncRoot)
        {
            if (State is DomainState.Shutdown or DomainState.Crashed)
                return;
            State = DomainState.Crashed;
        }

        StopVcpus();
        Console.Flush();
        CrashReport = ReferenceHypervisor.CrashReport.Build(this, vcpu, why);
        Machine.Log(CrashReport);
        Machine.NotifyDomainException();
    }

    /// <summary>Marks the domain blocked or runnable from its vCPUs' state.</summary>
    public void UpdateBlockedState()
    {
        lock (SyncRoot)
        {
            if (State is DomainState.Running or DomainState.Blocked)
                State = HasRunnableVcpu ? DomainState.Running : DomainState.Blocked;
        }
    }

    /// <summary>The domain stopped: its vCPUs running on other threads leave the guest at their next exit (threaded scheduler).</summary>
    private void StopVcpus()
    {
        foreach (var v in _vcpus)
            v.RequestSliceEnd();
        Machine.SignalScheduler();
    }

    /// <summary>The SHUTDOWN_* name of a reason.</summary>
    public static string ShutdownReasonName(ShutdownReason reason) => reason switch
    {
        ShutdownReason.Poweroff => "poweroff",
        ShutdownReason.Reboot => "reboot",
        ShutdownReason.Suspend => "suspend",
        ShutdownReason.Crash => "crash",
        ShutdownReason.Watchdog => "watchdog",
        ShutdownReason.SoftReset => "soft_reset",
        _ => $"reason {(uint)reason}",
    };

    /// <summary>Releases the vCPUs' processors and returns the domain's frames to the machine.</summary>
    public void Dispose()
    {
        if (Grants is not null)
            Machine.Grants.DestroyDomain(Grants);
        if (Events is not null)
            Machine.Events.DestroyDomain(Events);
        foreach (var vcpu in _vcpus)
        {
            vcpu.Time.ReleaseVcpuInfoPage(Machine);   // after the event channels, which wrote into it
            (vcpu.Processor as IDisposable)?.Dispose();
        }

        _vcpus.Clear();
        Ept.Dispose();
        // Through the grant tables' counts (FrameReferences.Free): a frame another domain still maps by grant keeps its
        // owner and contents until the last mapping goes (Xen's put_page), instead of going back to the pool at once.
        foreach (var (first, count) in _frames)
        {
            for (ulong i = 0; i < count; i++)
                Machine.Frames.Free(new MachineFrameNumber(first.Value + i));
        }

        _frames.Clear();
    }
}
