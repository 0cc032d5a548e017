namespace VmmKit.Ept;

/// <summary>
/// Thrown by <see cref="MachineMemory.AllocateFrame"/> and <see cref="MachineMemory.AllocateContiguous"/>
/// when no suitable free frames remain, or when the allocation would take the owner past the limit set with
/// <see cref="MachineMemory.SetLimit"/>. A hypervisor turns it into <c>-ENOMEM</c> for the guest.
/// </summary>
public sealed class MachineMemoryExhaustedException : Exception
{
    /// <summary>Creates the exception with a default message.</summary>
    public MachineMemoryExhaustedException() : base("Machine memory exhausted.") { }

    /// <summary>Creates the exception with <paramref name="message"/>.</summary>
    /// <param name="message">What was requested and why it failed.</param>
    public MachineMemoryExhaustedException(string message) : base(message) { }

    /// <summary>Creates the exception with <paramref name="message"/> and an inner exception.</summary>
    /// <param name="message">What was requested and why it failed.</param>
    /// <param name="innerException">The cause.</param>
    public MachineMemoryExhaustedException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The owner the frames were requested for.</summary>
    public FrameOwner Owner { get; init; }

    /// <summary>The number of frames requested.</summary>
    public ulong RequestedFrames { get; init; }
}
