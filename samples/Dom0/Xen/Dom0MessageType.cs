namespace VmmKit.Dom0.Xen;

/// <summary>Message types of the Dom0 channel, version 2 (docs/dom0-abi.md).</summary>
public enum Dom0MessageType : ushort
{
    /// <summary>Hypervisor to Dom0 once at connect: machine size, Dom0's memory, with the machine-memory file (SCM_RIGHTS).</summary>
    Welcome = 1,

    /// <summary><c>{u64 op, u64 arg[5]}</c> → <c>{s64 rax}</c>: a hypercall as domain 0 (IOCTL_PRIVCMD_HYPERCALL).</summary>
    Hypercall = 2,

    /// <summary><c>{u16 domid, u16 pad, u32 count, u64 gfn[count]}</c> → <c>{s64 mfn or -errno}[count]</c> (IOCTL_PRIVCMD_MMAPBATCH_V2).</summary>
    MmapBatch = 3,

    /// <summary><c>{u32 count, u32 pad, u64 mfn[count]}</c> → <c>{s64 rc}</c>: drops MMAPBATCH references.</summary>
    Unmap = 4,

    /// <summary>Hypervisor to Dom0, request id 0: <c>{u32 port, u32 pad}</c>, a port of domain 0 fired (read of /dev/xen/evtchn).</summary>
    Event = 5,
}
