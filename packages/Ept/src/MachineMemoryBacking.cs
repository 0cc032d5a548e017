namespace VmmKit.Ept;

/// <summary>What holds the bytes of a <see cref="MachineMemory"/>.</summary>
public enum MachineMemoryBacking
{
    /// <summary>A private anonymous mapping (mmap(2) with MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE): this process only.</summary>
    Anonymous,

    /// <summary>
    /// A Linux memory file (memfd_create(2)) mapped MAP_SHARED: a process given its descriptor maps the same frames,
    /// so a control domain in another process reads and writes guest memory in place, never through copies.
    /// </summary>
    SharedFile,
}
