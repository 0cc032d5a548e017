namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// Locked mode for LOCK'ed read-modify-writes (Handlers/LockedRmw.cs). SDM Vol. 3A §9.1.2.2: a locked operation is
/// atomic against every other processor's access to the operand, plain stores included (Linux releases a spinlock with
/// a plain MOV). While <see cref="Locked"/> is set the memory slow path records the read of the operand (linear
/// address, size, host address, value) and writes the operand with a compare-and-swap against that value; a failed
/// swap writes nothing and sets <see cref="LockRetry"/>, and the caller re-runs the instruction from its snapshot.
/// </summary>
internal sealed unsafe partial class Core
{
    /// <summary>Set by <see cref="BeginLocked"/> for the length of one LOCK'ed instruction.</summary>
    public bool Locked;
    /// <summary>Set when the compare-and-swap of the locked write lost to another processor's store.</summary>
    public bool LockRetry;

    private ulong _lockLin;
    private int _lockSize;
    private byte* _lockHost;
    private ulong _lockValue;

    /// <summary>
    /// Enters locked mode for the operand at <paramref name="lin"/> (<paramref name="size"/> 1, 2, 4 or 8, naturally
    /// aligned): drops the read and write permissions the software TLB caches for its page, so that both the read and
    /// the write of the operand take the slow path.
    /// </summary>
    public void BeginLocked(ulong lin, int size)
    {
        TlbEntry* e = Tlb + ((lin >> 12) & (SoftTlb.Entries - 1));
        e->ReadTag = SoftTlb.Invalid;
        e->WriteTag = SoftTlb.Invalid;
        _lockLin = lin;
        _lockSize = size;
        _lockHost = null;
        LockRetry = false;
        Locked = true;
    }

    /// <summary>Leaves locked mode; returns true when the instruction must be re-run (its swap failed).</summary>
    public bool EndLocked()
    {
        Locked = false;
        _lockHost = null;
        return LockRetry;
    }

    /// <summary>Called by the read slow path in locked mode: reads the operand once and remembers the value.</summary>
    private ulong LockedRead(ulong lin, int size, byte* p)
    {
        ulong value = size switch
        {
            1 => Volatile.Read(ref *p),
            2 => Volatile.Read(ref *(ushort*)p),
            4 => Volatile.Read(ref *(uint*)p),
            _ => Volatile.Read(ref *(ulong*)p),
        };
        if (lin == _lockLin && size == _lockSize && _lockHost == null)
        {
            _lockHost = p;
            _lockValue = value;
        }
        return value;
    }

    /// <summary>
    /// Called by the write slow path in locked mode: the operand's write is a compare-and-swap against the value read;
    /// false (nothing written, <see cref="LockRetry"/> set) when another processor changed it meanwhile.
    /// </summary>
    private bool LockedWrite(ulong lin, int size, byte* p, ulong value)
    {
        if (lin != _lockLin || size != _lockSize || p != _lockHost)
        {
            WritePlain(p, size, value);
            return true;
        }
        ulong old = _lockValue;
        bool swapped = size switch
        {
            1 => Interlocked.CompareExchange(ref *p, (byte)value, (byte)old) == (byte)old,
            2 => Interlocked.CompareExchange(ref *(ushort*)p, (ushort)value, (ushort)old) == (ushort)old,
            4 => Interlocked.CompareExchange(ref *(uint*)p, (uint)value, (uint)old) == (uint)old,
            _ => Interlocked.CompareExchange(ref *(ulong*)p, value, old) == old,
        };
        if (!swapped) LockRetry = true;
        return swapped;
    }

    private static void WritePlain(byte* p, int size, ulong value)
    {
        switch (size)
        {
            case 1: *p = (byte)value; break;
            case 2: *(ushort*)p = (ushort)value; break;
            case 4: *(uint*)p = (uint)value; break;
            default: *(ulong*)p = value; break;
        }
    }
}
