using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A vCPU's time and where its <c>vcpu_info</c> lives: the pvclock (<c>vcpu_time_info</c>) written each time the vCPU
/// is scheduled, as Xen's <c>update_vcpu_system_time</c> does, into shared_info's <c>vcpu_info[id]</c> or into the page the
/// guest registered with VCPUOP_register_vcpu_info (xen/common/domain.c, <c>map_vcpu_info</c>); and its runstate.
/// </summary>
/// <remarks>
/// Guest time advances only while the vCPU runs (the TSC counts retired instructions), so all of a vCPU's time is
/// running time and a pvclock written once stays exact; it is rewritten at every slice anyway, as under Xen. On the
/// threaded scheduler every vCPU's TSC reads come from its domain's one clock (<see cref="GuestTime.ReadTsc"/>) and
/// every record uses the same scale, so system time computed on any vCPU never goes back.
/// </remarks>
internal sealed class VcpuTime
{
    /// <summary><c>offsetof(struct vcpu_info, time)</c>: 32 in both the 64-bit and the 32-bit layout (xen.h).</summary>
    private const int TimeOffset = 32;

    /// <summary><c>sizeof(struct vcpu_info)</c>: 64 in both layouts.</summary>
    public const int VcpuInfoSize = 64;

    private MachineFrameNumber _registeredFrame;
    private int _registeredOffset = -1;
    private ulong _stateEntryTime;
    private ulong? _runstateArea;
    private ulong? _timeArea;

    /// <summary>True once VCPUOP_register_vcpu_info moved the vcpu_info into a guest page.</summary>
    public bool IsRegistered => _registeredOffset >= 0;

    /// <summary>The vCPU is scheduled in: its runstate (running since now), registered runstate area and pvclock are brought up to date.</summary>
    public void BeginSlice(VirtualCpu vcpu)
    {
        _stateEntryTime = GuestTime.SystemTime(vcpu);
        UpdateTimeInfo(vcpu);
        UpdateRunstateArea(vcpu);
    }

    /// <summary>
    /// VCPUOP_register_runstate_memory_area: from now on the runstate is copied to guest virtual address
    /// <paramref name="address"/> each time the vCPU is scheduled, and once now, through the caller's
    /// <paramref name="memory"/> (Xen's <c>__copy_to_guest</c> in do_vcpu_op runs in the caller's address space, whichever
    /// vCPU it names; and a sibling's own accessor, with its translation cache, is its thread's alone). As Xen for a
    /// translated guest, the address is not checked here; a copy that faults is skipped (xen/common/domain.c,
    /// <c>update_runstate_area</c>).
    /// </summary>
    public void RegisterRunstateArea(VirtualCpu vcpu, ulong address, IGuestVirtualMemory memory)
    {
        _runstateArea = address;
        UpdateRunstateArea(vcpu, memory);
    }

    /// <summary>
    /// VCPUOP_register_vcpu_time_memory_area: from now on a copy of the vCPU's <c>vcpu_time_info</c> is written to guest
    /// virtual address <paramref name="address"/> whenever the pvclock is (Xen's <c>update_guest_time_info</c> in
    /// xen/arch/x86/time.c), with the same version protocol, and once now. Linux maps that page into user space for the
    /// vDSO's pvclock. A copy that faults is skipped, as Xen's <c>__copy_to_guest</c> result is ignored there. The copy
    /// made now goes through the caller's <paramref name="memory"/>, as in <see cref="RegisterRunstateArea"/>.
    /// </summary>
    public void RegisterTimeMemoryArea(VirtualCpu vcpu, ulong address, IGuestVirtualMemory memory)
    {
        _timeArea = address;
        UpdateTimeInfo(vcpu, memory);
    }

    /// <summary>Copies the runstate to the registered area through <paramref name="memory"/> (the vCPU's own by default, on its thread).</summary>
    private void UpdateRunstateArea(VirtualCpu vcpu, IGuestVirtualMemory? memory = null)
    {
        if (_runstateArea is not { } address)
            return;
        memory ??= vcpu.LinearMemory;
        VcpuRunstateInfo r = Runstate(vcpu);
        if (vcpu.Domain.Has32BitSharedInfo)
        {
            var c = new CompatVcpuRunstateInfo { State = r.State, StateEntryTime = r.StateEntryTime, Time = r.Time };
            memory.TryWrite(address, MemoryMarshal.AsBytes(new Span<CompatVcpuRunstateInfo>(ref c)));
        }
        else
        {
            memory.TryWrite(address, MemoryMarshal.AsBytes(new Span<VcpuRunstateInfo>(ref r)));
        }
    }

    /// <summary>The 64 bytes of the vCPU's current vcpu_info, or empty for a vCPU past shared_info's 32 slots that registered none.</summary>
    public Span<byte> VcpuInfo(VirtualCpu vcpu)
    {
        var memory = vcpu.Domain.Machine.Memory;
        if (IsRegistered)
            return memory.GetFrame(_registeredFrame).Slice(_registeredOffset, VcpuInfoSize);
        if (vcpu.Id < SharedInfo.LegacyMaxVcpus)
            return memory.GetFrame(vcpu.Domain.SharedInfoFrame).Slice(vcpu.Id * VcpuInfoSize, VcpuInfoSize);
        return [];
    }

    /// <summary>
    /// Writes <c>vcpu_time_info</c> with the version protocol (xen/arch/x86/time.c <c>update_vcpu_system_time</c>):
    /// version made odd, the fields written, version made even again, so a guest reading it twice sees a consistent copy.
    /// The copy to the registered time area goes through <paramref name="memory"/>: the vCPU's own accessor by default (on
    /// its own thread), the caller's when another vCPU registers it.
    /// </summary>
    public void UpdateTimeInfo(VirtualCpu vcpu, IGuestVirtualMemory? memory = null)
    {
        Span<byte> info = VcpuInfo(vcpu);
        if (info.IsEmpty)
            return;
        ref VcpuTimeInfo time = ref MemoryMarshal.AsRef<VcpuTimeInfo>(info.Slice(TimeOffset, 32));
        ulong tsc = GuestTime.Tsc(vcpu);
        // Threaded scheduler: the domain's clock is raised to the timestamp first, so that no vCPU reads a TSC below it
        // later (GuestTime.ReadTsc) and a guest using this record from another CPU (the vDSO's copy) never sees time
        // before system_time. The mapping TSC -> ns is the same for every vCPU, so each record agrees with every TSC read.
        if (vcpu.Thread is not null)
            vcpu.Domain.PublishClock(tsc);
        uint version = (time.Version + 1) | 1;   // version_update_begin
        Volatile.Write(ref time.Version, version);
        time.TscTimestamp = tsc;
        time.SystemTime = GuestTime.ToNanoseconds(tsc);
        time.TscToSystemMul = GuestTime.TscToSystemMul;
        time.TscShift = GuestTime.TscShift;
        // The TSC is the same deterministic counter wherever the vCPU runs: Xen's XEN_PVCLOCK_TSC_STABLE_BIT.
        time.Flags = VcpuTimeInfo.TscStableBit;
        Volatile.Write(ref time.Version, version + 1);   // version_update_end

        if (_timeArea is { } area)
        {
            // The guest's copy: version made odd first, then the whole record, then the version made even.
            VcpuTimeInfo copy = time;
            memory ??= vcpu.LinearMemory;
            if (memory.TryWrite(area, MemoryMarshal.AsBytes(new Span<uint>(ref version))))
            {
                memory.TryWrite(area, MemoryMarshal.AsBytes(new Span<VcpuTimeInfo>(ref copy)));
            }
        }
    }

    /// <summary>
    /// VCPUOP_register_vcpu_info as Xen 4.17.5's <c>map_vcpu_info</c>: the vcpu_info must fit in the page and be aligned as
    /// the domain's layout aligns it, 8 bytes (4 for the 32-bit shared_info layout) (-ENXIO), may be registered once (-EINVAL), only for the calling vCPU or one that is down (-EINVAL), on a guest frame that is
    /// mapped writable (-EINVAL). The current contents move to the new place, every event is marked pending so none
    /// is lost, and the pvclock is written there at once (and to the registered time area, through the caller's
    /// <paramref name="memory"/>, as <see cref="RegisterTimeMemoryArea"/>).
    /// </summary>
    public long Register(VirtualCpu vcpu, VirtualCpu caller, ulong gfn, uint offset, IGuestVirtualMemory memory)
    {
        // Xen 4.17.5's map_vcpu_info: -ENXIO for a vcpu_info crossing the page or not aligned as alignof(vcpu_info) of
        // the domain's layout (its words are updated atomically).
        uint align = vcpu.Domain.Has32BitSharedInfo ? 4u : 8u;
        if (offset > Page.PageSize - VcpuInfoSize || (offset & (align - 1)) != 0)
            return XenErrno.ENXIO.Negated();
        if (IsRegistered || (vcpu != caller && vcpu.IsUp))
            return XenErrno.EINVAL.Negated();
        var machine = vcpu.Domain.Machine;
        machine.VcpuInfoLooked?.Invoke(caller, vcpu);

        // map_vcpu_info's get_page_from_gfn: the page, looked up and referenced in one step (another vCPU may release the
        // gfn meanwhile, and its frame go to another domain), stays allocated while the hypervisor writes the vcpu_info
        // into it, whoever frees it later, until the domain's teardown (unmap_vcpu_info: ReleaseVcpuInfoPage).
        if (gfn >= 1UL << 36
            || !machine.Frames.TryAcquireMapped(vcpu.Domain.Ept, new GuestFrameNumber(gfn), EptAccess.Write, out var frame))
            return XenErrno.EINVAL.Negated();

        Span<byte> old = VcpuInfo(vcpu);
        Span<byte> target = vcpu.Domain.Machine.Memory.GetFrame(frame).Slice((int)offset, VcpuInfoSize);
        if (old.IsEmpty)
            target.Clear();
        else
            old.CopyTo(target);
        _registeredFrame = frame;
        _registeredOffset = (int)offset;

        // evtchn_pending_sel = ~0 in the latched layout, then evtchn_upcall_pending = 1 (vcpu_mark_events_pending).
        if (vcpu.Domain.Has32BitSharedInfo)
            MemoryMarshal.Write(target[4..], uint.MaxValue);
        else
            MemoryMarshal.Write(target[8..], ulong.MaxValue);
        target[0] = 1;
        UpdateTimeInfo(vcpu, memory);
        unsafe
        {
            // VmmKit.EventChannel sets its pending bits in the new place from now on (it marks everything pending too).
            vcpu.Domain.Events.SetVcpuInfo(vcpu.Id, vcpu.Domain.Machine.Memory.GetFramePointer(frame) + offset);
        }

        return 0;
    }

    /// <summary>
    /// Xen's <c>unmap_vcpu_info</c> at the domain's teardown: drops the reference <see cref="Register"/> took on the page,
    /// which its owner may have freed meanwhile (it goes back to the pool now), after which nothing is written there.
    /// </summary>
    public void ReleaseVcpuInfoPage(Machine machine)
    {
        if (!IsRegistered)
            return;
        _registeredOffset = -1;
        machine.Frames.Release(_registeredFrame);
    }

    /// <summary>VCPUOP_get_runstate_info: running since the slice began; every nanosecond so far was running time.</summary>
    public VcpuRunstateInfo Runstate(VirtualCpu vcpu)
    {
        var info = new VcpuRunstateInfo { State = (int)RunstateState.Running, StateEntryTime = _stateEntryTime };
        info.Time[(int)RunstateState.Running] = GuestTime.SystemTime(vcpu);
        return info;
    }
}
