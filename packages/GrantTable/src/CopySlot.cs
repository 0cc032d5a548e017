using System.Runtime.InteropServices;

namespace VmmKit.GrantTable;

/// <summary>
/// One thread's mark on one <see cref="GrantTableHost"/> that it holds copy words (GrantTableHost.Exclusion.cs): the
/// thread's copies set it before they take their first word and clear it after they let go of their last, and the
/// exclusive lock waits until every thread's mark is clear. Only its thread writes it; it fills two cache lines of its
/// own, so threads copying side by side never write one line.
/// </summary>
[StructLayout(LayoutKind.Explicit)]
internal sealed class CopySlot(Thread owner)
{
    /// <summary>1 while the thread holds copy words of the host.</summary>
    [FieldOffset(64)]
    public int Held;

    /// <summary>The thread whose mark this is; a slot of a thread that ended is given to the next thread that needs one.</summary>
    [FieldOffset(0)]
    public Thread Owner = owner;

    [FieldOffset(120)]
    private readonly long _end; // keeps the object 128 bytes long, Held alone on its cache line whatever lies after it
}
