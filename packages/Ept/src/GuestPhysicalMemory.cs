using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Ept;

/// <summary>
/// Byte and struct access to one guest-physical address space through its EPT, with a translation cache.
/// Every access is translated by <see cref="EptWalker"/> (A/D flags are set as hardware would) and fails cleanly,
/// with the EPT-violation qualification hardware would report, on unmapped or forbidden addresses.
/// </summary>
/// <remarks>
/// <para>
/// The cache holds, per guest frame, the host page and the rights of the last successful walk. Like a TLB it is not
/// told about EPT edits: after <see cref="EptTables"/> changes or removes a mapping (its <see cref="EptTables.Generation"/>
/// moves), the hypervisor must invalidate before the change is guaranteed to be seen:
/// <see cref="InvalidateSingleContext(MachineMemory, EptPointer)"/> reaches every accessor of that EPT,
/// <see cref="InvalidateSingleContext()"/> this one only, <see cref="InvalidateAllContexts"/> every accessor of the machine.
/// With A/D flags enabled, a page is cached as writable only after a write set its dirty flag.
/// </para>
/// <para>
/// An instance is meant for one virtual processor or one host thread; the static invalidations may be called
/// from any thread. Multi-page accesses are not atomic: when a later page faults, the earlier pages have already been
/// read or written (as with a faulting REP MOVS).
/// </para>
/// </remarks>
public sealed unsafe class GuestPhysicalMemory
{
    private static readonly object s_unalignedAtomicGate = new();
    private readonly MachineMemory _memory;
    private readonly EptPointer _eptp;
    private readonly bool _modeBasedExecuteControl;
    private readonly TranslationCache _cache = TranslationCache.Create();
    private readonly StrongBox<long> _contextEpoch;
    private readonly StrongBox<long> _contextInvalidations;
    private long _epoch;

    /// <summary>Creates an accessor for the guest-physical space that <paramref name="eptp"/> describes.</summary>
    /// <param name="memory">The machine memory holding the tables and the guest's frames.</param>
    /// <param name="eptp">The EPTP (for example <see cref="EptTables.Pointer"/>).</param>
    public GuestPhysicalMemory(MachineMemory memory, EptPointer eptp)
        : this(memory, eptp, modeBasedExecuteControl: false)
    {
    }

    /// <summary>Creates an accessor for the guest-physical space that <paramref name="eptp"/> describes.</summary>
    /// <param name="memory">The machine memory holding the tables and the guest's frames.</param>
    /// <param name="eptp">The EPTP.</param>
    /// <param name="modeBasedExecuteControl">Whether the "mode-based execute control for EPT" VM-execution control is on for this context.</param>
    public GuestPhysicalMemory(MachineMemory memory, EptPointer eptp, bool modeBasedExecuteControl)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _memory = memory;
        _eptp = eptp;
        _modeBasedExecuteControl = modeBasedExecuteControl;
        _contextEpoch = memory.ContextEpoch(eptp.Root);
        _contextInvalidations = memory.ContextInvalidations(eptp.Root);
        _epoch = Volatile.Read(ref memory.TranslationEpoch) + Volatile.Read(ref _contextEpoch.Value);
    }

    /// <summary>The machine memory behind this space.</summary>
    public MachineMemory Memory => _memory;

    /// <summary>The EPTP this space is translated with.</summary>
    public EptPointer Pointer => _eptp;

    /// <summary>
    /// INVEPT single-context: drops every cached translation of this context. Call it on every accessor using an EPT
    /// after changing or removing an existing mapping in it. It also counts as the invalidation after which
    /// <see cref="EptTables"/> may reuse the table frames the edit retired (as Xen frees page-table pages after the flush).
    /// </summary>
    public void InvalidateSingleContext()
    {
        _cache.Flush();
        Interlocked.Increment(ref _contextInvalidations.Value);
    }

    /// <summary>
    /// INVEPT single-context for every accessor over <paramref name="memory"/> whose EPTP has the same root as <paramref name="eptp"/>
    /// (all virtual processors running that EPT), wherever they run; each drops its cached translations at its next access.
    /// It does not wait for an access another thread has already translated (a copy in progress, a host pointer in use):
    /// before a frame the EPT no longer maps leaves the domain, the hypervisor must know no such access is left (SDM §29.4.3:
    /// INVEPT acts on the logical processor that executes it; the others are reached by the hypervisor's IPI).
    /// </summary>
    /// <param name="memory">The machine memory.</param>
    /// <param name="eptp">The EPTP whose context to invalidate.</param>
    public static void InvalidateSingleContext(MachineMemory memory, EptPointer eptp)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Interlocked.Increment(ref memory.ContextEpoch(eptp.Root).Value);
        Interlocked.Increment(ref memory.ContextInvalidations(eptp.Root).Value);
    }

    /// <summary>INVEPT all-context: invalidates the cached translations of every accessor over <paramref name="memory"/>.</summary>
    /// <param name="memory">The machine memory whose contexts to invalidate.</param>
    public static void InvalidateAllContexts(MachineMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Interlocked.Increment(ref memory.TranslationEpoch);
    }

    /// <summary>
    /// Fast path: the host pointer to the 4 KiB page containing <paramref name="gpa"/>, if the EPT allows <paramref name="access"/>.
    /// </summary>
    /// <param name="gpa">Any address in the page.</param>
    /// <param name="access">The access to check.</param>
    /// <param name="page">Host pointer to the first byte of the page; valid while the mapping and the machine memory live.</param>
    /// <param name="violation">The EPT-violation qualification on failure (zero for a misconfiguration).</param>
    /// <param name="linearFlags">Bits 16:7 of the qualification when the access translates a guest linear address.</param>
    /// <returns>False on a violation or misconfiguration.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetHostPage(GuestPhysicalAddress gpa, EptAccess access, out byte* page, out EptViolationQualification violation, EptViolationQualification linearFlags = default)
    {
        bool ok = TryGetHostPage(gpa, access, out page, out GuestMemoryFault fault, linearFlags);
        violation = fault.Qualification;
        return ok;
    }

    /// <summary>
    /// Fast path: the host pointer to the 4 KiB page containing <paramref name="gpa"/>, or the fault (violation or
    /// misconfiguration) hardware would report.
    /// </summary>
    /// <param name="gpa">Any address in the page.</param>
    /// <param name="access">The access to check.</param>
    /// <param name="page">Host pointer to the first byte of the page.</param>
    /// <param name="fault">The fault on failure.</param>
    /// <param name="linearFlags">Bits 16:7 of the qualification when the access translates a guest linear address.</param>
    /// <returns>False on a violation or misconfiguration.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetHostPage(GuestPhysicalAddress gpa, EptAccess access, out byte* page, out GuestMemoryFault fault, EptViolationQualification linearFlags = default)
    {
        long epoch = Volatile.Read(ref _memory.TranslationEpoch) + Volatile.Read(ref _contextEpoch.Value);
        if (epoch == _epoch && _cache.TryLookup(gpa.Value >> Page.PageShift, CacheRights(access), out page))
        {
            fault = default;
            return true;
        }

        return Walk(gpa, access, epoch, out page, out fault, linearFlags);
    }

    /// <summary>
    /// The host address of <paramref name="length"/> bytes at <paramref name="gpa"/> when they lie within one page that
    /// the EPT maps with <paramref name="access"/>; otherwise null (more than a page, or the access would fault). For a
    /// read or write made at once: the address is good only until the EPT changes.
    /// </summary>
    /// <param name="gpa">First byte.</param>
    /// <param name="length">Number of bytes, 1 to 4096.</param>
    /// <param name="access">The access to check.</param>
    /// <returns>The host address of the first byte, or null.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* TranslateToHost(GuestPhysicalAddress gpa, int length, EptAccess access)
    {
        ulong offset = gpa.Value & Page.PageOffsetMask;
        if ((uint)(length - 1) >= Page.PageSize || offset + (uint)length > Page.PageSize)
        {
            return null;
        }

        // TryGetHostPage's hit, without its fault record: a hypercall translates right after copying a page, when a
        // store to that record would wait for the copy's stores to drain before the lookup's loads could start.
        long epoch = Volatile.Read(ref _memory.TranslationEpoch) + Volatile.Read(ref _contextEpoch.Value);
        if (epoch == _epoch && _cache.TryLookup(gpa.Value >> Page.PageShift, CacheRights(access), out byte* page))
        {
            return page + offset;
        }

        return TranslateToHostByWalk(gpa, access, epoch, offset);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte* TranslateToHostByWalk(GuestPhysicalAddress gpa, EptAccess access, long epoch, ulong offset) =>
        Walk(gpa, access, epoch, out byte* page, out GuestMemoryFault _, default) ? page + offset : null;

    /// <summary>Reads <paramref name="destination"/>.Length bytes from <paramref name="gpa"/>, across pages.</summary>
    /// <param name="gpa">First byte.</param>
    /// <param name="destination">Where to copy.</param>
    /// <param name="fault">The first fault.</param>
    /// <returns>False on a fault; bytes of earlier pages have been copied.</returns>
    public bool TryRead(GuestPhysicalAddress gpa, Span<byte> destination, out GuestMemoryFault fault)
    {
        ulong address = gpa.Value;
        int done = 0;
        while (done < destination.Length)
        {
            if (!TryGetHostPage(new GuestPhysicalAddress(address), EptAccess.Read, out byte* page, out fault))
            {
                return false;
            }

            int offset = (int)(address & Page.PageOffsetMask);
            int n = Math.Min(Page.PageSize - offset, destination.Length - done);
            new ReadOnlySpan<byte>(page + offset, n).CopyTo(destination[done..]);
            done += n;
            address += (ulong)n;
        }

        fault = default;
        return true;
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="gpa"/>, across pages.</summary>
    /// <param name="gpa">First byte.</param>
    /// <param name="source">The bytes.</param>
    /// <param name="fault">The first fault.</param>
    /// <returns>False on a fault; bytes of earlier pages have been written.</returns>
    public bool TryWrite(GuestPhysicalAddress gpa, ReadOnlySpan<byte> source, out GuestMemoryFault fault)
    {
        ulong address = gpa.Value;
        int done = 0;
        while (done < source.Length)
        {
            if (!TryGetHostPage(new GuestPhysicalAddress(address), EptAccess.Write, out byte* page, out fault))
            {
                return false;
            }

            int offset = (int)(address & Page.PageOffsetMask);
            int n = Math.Min(Page.PageSize - offset, source.Length - done);
            source.Slice(done, n).CopyTo(new Span<byte>(page + offset, n));
            done += n;
            address += (ulong)n;
        }

        fault = default;
        return true;
    }

    /// <summary>Reads a value of type <typeparamref name="T"/> (host byte order) from <paramref name="gpa"/>.</summary>
    /// <typeparam name="T">An unmanaged type.</typeparam>
    /// <param name="gpa">First byte.</param>
    /// <param name="value">The value, or default on failure.</param>
    /// <returns>False on a fault.</returns>
    public bool TryRead<T>(GuestPhysicalAddress gpa, out T value)
        where T : unmanaged => TryRead(gpa, out value, out _);

    /// <summary>Reads a value of type <typeparamref name="T"/> (host byte order) from <paramref name="gpa"/>.</summary>
    /// <typeparam name="T">An unmanaged type.</typeparam>
    /// <param name="gpa">First byte.</param>
    /// <param name="value">The value, or default on failure.</param>
    /// <param name="fault">The fault on failure.</param>
    /// <returns>False on a fault.</returns>
    public bool TryRead<T>(GuestPhysicalAddress gpa, out T value, out GuestMemoryFault fault)
        where T : unmanaged
    {
        int offset = gpa.PageOffset;
        if (offset + sizeof(T) <= Page.PageSize)
        {
            if (TryGetHostPage(gpa, EptAccess.Read, out byte* page, out fault))
            {
                value = Unsafe.ReadUnaligned<T>(page + offset);
                return true;
            }

            value = default;
            return false;
        }

        value = default;
        if (TryRead(gpa, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1)), out fault))
        {
            return true;
        }

        value = default;
        return false;
    }

    /// <summary>Writes a value of type <typeparamref name="T"/> (host byte order) at <paramref name="gpa"/>.</summary>
    /// <typeparam name="T">An unmanaged type.</typeparam>
    /// <param name="gpa">First byte.</param>
    /// <param name="value">The value.</param>
    /// <returns>False on a fault.</returns>
    public bool TryWrite<T>(GuestPhysicalAddress gpa, in T value)
        where T : unmanaged => TryWrite(gpa, in value, out _);

    /// <summary>Writes a value of type <typeparamref name="T"/> (host byte order) at <paramref name="gpa"/>.</summary>
    /// <typeparam name="T">An unmanaged type.</typeparam>
    /// <param name="gpa">First byte.</param>
    /// <param name="value">The value.</param>
    /// <param name="fault">The fault on failure.</param>
    /// <returns>False on a fault.</returns>
    public bool TryWrite<T>(GuestPhysicalAddress gpa, in T value, out GuestMemoryFault fault)
        where T : unmanaged
    {
        int offset = gpa.PageOffset;
        if (offset + sizeof(T) <= Page.PageSize)
        {
            if (TryGetHostPage(gpa, EptAccess.Write, out byte* page, out fault))
            {
                Unsafe.WriteUnaligned(page + offset, value);
                return true;
            }

            return false;
        }

        return TryWrite(gpa, MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(in value, 1)), out fault);
    }

    /// <summary>
    /// Copies <paramref name="length"/> bytes inside the guest-physical space. Overlapping ranges are copied as by memmove
    /// (backwards when the destination starts inside the source), so the first fault reported may be at the range's end.
    /// </summary>
    /// <param name="destination">First destination byte.</param>
    /// <param name="source">First source byte.</param>
    /// <param name="length">Number of bytes.</param>
    /// <param name="fault">The first fault.</param>
    /// <returns>False on a fault; chunks already copied stay copied.</returns>
    public bool TryCopy(GuestPhysicalAddress destination, GuestPhysicalAddress source, ulong length, out GuestMemoryFault fault)
    {
        fault = default;
        if (length == 0)
        {
            return true;
        }

        bool backwards = destination.Value > source.Value && destination.Value - source.Value < length;
        ulong remaining = length;
        while (remaining != 0)
        {
            ulong src, dst, n;
            if (!backwards)
            {
                src = source.Value + (length - remaining);
                dst = destination.Value + (length - remaining);
                n = Math.Min(remaining, Math.Min(Page.PageSize - (src & Page.PageOffsetMask), Page.PageSize - (dst & Page.PageOffsetMask)));
            }
            else
            {
                ulong srcEnd = source.Value + remaining;
                ulong dstEnd = destination.Value + remaining;
                n = Math.Min(remaining, Math.Min(((srcEnd - 1) & Page.PageOffsetMask) + 1, ((dstEnd - 1) & Page.PageOffsetMask) + 1));
                src = srcEnd - n;
                dst = dstEnd - n;
            }

            if (!TryGetHostPage(new GuestPhysicalAddress(src), EptAccess.Read, out byte* srcPage, out fault)
                || !TryGetHostPage(new GuestPhysicalAddress(dst), EptAccess.Write, out byte* dstPage, out fault))
            {
                return false;
            }

            Buffer.MemoryCopy(srcPage + (src & Page.PageOffsetMask), dstPage + (dst & Page.PageOffsetMask), n, n);
            remaining -= n;
        }

        return true;
    }

    /// <summary>
    /// Compare-exchange of 32 bits at <paramref name="gpa"/>, like LOCK CMPXCHG: atomic against other processors when
    /// naturally aligned; an unaligned operand is compared and written under a host lock (atomic only against other
    /// unaligned operations). The access needs read and write rights, whatever the comparison's result.
    /// </summary>
    /// <param name="gpa">The operand's address.</param>
    /// <param name="value">Stored when the current value equals <paramref name="comparand"/>.</param>
    /// <param name="comparand">The expected value.</param>
    /// <param name="original">The value found.</param>
    /// <param name="fault">The fault on failure.</param>
    /// <returns>False on a fault (nothing was written).</returns>
    public bool TryCompareExchange32(GuestPhysicalAddress gpa, uint value, uint comparand, out uint original, out GuestMemoryFault fault)
    {
        if ((gpa.Value & 3) == 0)
        {
            if (TryGetHostPage(gpa, EptAccess.Read | EptAccess.Write, out byte* page, out fault))
            {
                original = Interlocked.CompareExchange(ref *(uint*)(page + gpa.PageOffset), value, comparand);
                return true;
            }

            original = 0;
            return false;
        }

        return UnalignedCompareExchange(gpa, value, comparand, out original, out fault);
    }

    /// <summary>
    /// Compare-exchange of 64 bits at <paramref name="gpa"/>, like LOCK CMPXCHG8B/CMPXCHG: atomic when naturally aligned;
    /// otherwise done under a host lock.
    /// </summary>
    /// <param name="gpa">The operand's address.</param>
    /// <param name="value">Stored when the current value equals <paramref name="comparand"/>.</param>
    /// <param name="comparand">The expected value.</param>
    /// <param name="original">The value found.</param>
    /// <param name="fault">The fault on failure.</param>
    /// <returns>False on a fault (nothing was written).</returns>
    public bool TryCompareExchange64(GuestPhysicalAddress gpa, ulong value, ulong comparand, out ulong original, out GuestMemoryFault fault)
    {
        if ((gpa.Value & 7) == 0)
        {
            if (TryGetHostPage(gpa, EptAccess.Read | EptAccess.Write, out byte* page, out fault))
            {
                original = Interlocked.CompareExchange(ref *(ulong*)(page + gpa.PageOffset), value, comparand);
                return true;
            }

            original = 0;
            return false;
        }

        return UnalignedCompareExchange(gpa, value, comparand, out original, out fault);
    }

    private bool UnalignedCompareExchange<T>(GuestPhysicalAddress gpa, T value, T comparand, out T original, out GuestMemoryFault fault)
        where T : unmanaged, IEquatable<T>
    {
        original = default;
        GuestPhysicalAddress last = gpa + (ulong)(sizeof(T) - 1);
        if (!TryGetHostPage(gpa, EptAccess.Read | EptAccess.Write, out byte* first, out fault)
            || !TryGetHostPage(last, EptAccess.Read | EptAccess.Write, out byte* second, out fault))
        {
            return false;
        }

        // Both pages are checked before any byte moves, so a fault leaves memory untouched.
        int split = Math.Min(sizeof(T), Page.PageSize - gpa.PageOffset);
        Span<byte> bytes = stackalloc byte[sizeof(T)];
        lock (s_unalignedAtomicGate)
        {
            new ReadOnlySpan<byte>(first + gpa.PageOffset, split).CopyTo(bytes);
            new ReadOnlySpan<byte>(second, sizeof(T) - split).CopyTo(bytes[split..]);
            original = MemoryMarshal.Read<T>(bytes);
            if (original.Equals(comparand))
            {
                MemoryMarshal.Write(bytes, in value);
                bytes[..split].CopyTo(new Span<byte>(first + gpa.PageOffset, split));
                bytes[split..].CopyTo(new Span<byte>(second, sizeof(T) - split));
            }
        }

        return true;
    }

    private EptAccess CacheRights(EptAccess access) =>
        _modeBasedExecuteControl || (access & EptAccess.UserExecute) == 0
            ? access
            : (access & ~EptAccess.UserExecute) | EptAccess.Execute;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool Walk(GuestPhysicalAddress gpa, EptAccess access, long epoch, out byte* page, out GuestMemoryFault fault, EptViolationQualification linearFlags)
    {
        if (epoch != _epoch)
        {
            _cache.Flush(); // an all-context or single-context INVEPT happened since this cache was last used
            _epoch = epoch;
        }

        page = null;
        EptTranslationStatus status = EptWalker.Translate(_memory, _eptp, gpa, access, linearFlags, _modeBasedExecuteControl, out EptTranslation translation, out EptViolationQualification violation);
        if (status != EptTranslationStatus.Success)
        {
            fault = new GuestMemoryFault(gpa, status, violation);
            return false;
        }

        MachineFrameNumber frame = translation.Frame;
        if (!_memory.IsValid(frame))
        {
            // The EPT names memory that does not exist; no host access may follow it.
            fault = new GuestMemoryFault(gpa, EptTranslationStatus.Misconfiguration, default);
            return false;
        }

        page = _memory.GetFramePointer(frame);
        EptAccess rights = translation.Permissions;
        if (!_modeBasedExecuteControl && (rights & EptAccess.Execute) != 0)
        {
            rights |= EptAccess.UserExecute;
        }

        if (_eptp.AccessedDirtyEnabled && (access & EptAccess.Write) == 0)
        {
            rights &= ~EptAccess.Write; // the dirty flag is not set yet: the first write must walk (SDM §29.4.3.2)
        }

        if (Volatile.Read(ref _memory.TranslationEpoch) + Volatile.Read(ref _contextEpoch.Value) == epoch)
        {
            _cache.Fill(gpa.Value >> Page.PageShift, page, rights);
        }

        fault = default;
        return true;
    }
}
