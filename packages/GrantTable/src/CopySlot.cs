using System.Runtime.InteropServices;

namespace VmmKit.GrantTable;

/// <summary>
/// One thread's marks on one <see cref="GrantTableHost"/> (GrantTableHost.Exclusion.cs): <see cref="Held"/> while it
/// holds copy words, which the exclusive lock waits for, and the domains whose words it shares, which a copy taking a
/// word alone waits for. Only its thread writes it. It fills three cache lines: <see cref="Held"/>, written at every
/// copy call, alone on one, the shares, written only while copies share a word, alone on the next; so threads
/// copying side by side never write one line, and a copy reading every slot's shares reads lines no copy writes
/// unless it shares.
/// </summary>
[StructLayout(LayoutKind.Explicit)]
internal sealed class CopySlot(Thread owner)
{
    /// <summary>1 while the thread holds copy words of the host.</summary>
    [FieldOffset(64)]
    public int Held;

    /// <summary>The <see cref="GrantDomain.Serial"/> of a domain whose copy word the thread shares (0: none).</summary>
    [FieldOffset(128)]
    public long SharedA;

    /// <summary>A second such domain (a copy between two granters' grants).</summary>
    [FieldOffset(136)]
    public long SharedB;

    /// <summary>Shares a thread takes of domains' words before it lets copies of one take its word alone again.</summary>
    public const int ShareCalls = 1024;

    /// <summary>Shares left until the thread next lets copies of the domain it shares take its word alone again.</summary>
    [FieldOffset(144)]
    public int ShareCountdown = ShareCalls;

    /// <summary>The thread whose marks these are; a slot of a thread that ended is given to the next thread that needs one.</summary>
    [FieldOffset(0)]
    public Thread Owner = owner;

    [FieldOffset(184)]
    private readonly long _end; // keeps the object 192 bytes long, each line's fields alone on it whatever lies after it
}
