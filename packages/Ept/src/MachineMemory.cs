using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace VmmKit.Ept;

/// <summary>
/// The host's "physical RAM" for emulated machines: one reservation of lazily committed memory
/// (mmap with MAP_NORESERVE, so a 64 GiB machine costs nothing until its frames are touched),
/// divided into 4 KiB machine frames with an allocator that accounts every frame to a
/// <see cref="FrameOwner"/> and enforces per-owner limits (like Xen's <c>max_pages</c>).
/// </summary>
/// <remarks>
/// Frames handed out by the allocator always read as zero: freed frames are cleared (or returned to
/// the host with madvise(MADV_DONTNEED)) before they can be allocated again, so no data leaks between
/// domains. The allocator is thread-safe; frame contents are plain memory and follow the host's memory model.
/// </remarks>
public sealed unsafe class MachineMemory : IDisposable
{
    private const int OwnerSlots = 1 << 16;
    private const ulong DiscardThresholdFrames = 16;

    private readonly object _lock = new();
    private readonly ulong[] _usedBitmap;
    private readonly ushort[] _ownerOf;
    private readonly ulong[] _ownedCount = new ulong[OwnerSlots];
    private readonly ulong[] _limit = new ulong[OwnerSlots];
    private byte* _base;
    private ulong _size;
    private ulong _frameCount;
    private ulong _freeFrames;
    private ulong _searchHint;
    private readonly ConcurrentDictionary<ulong, StrongBox<long>> _contextEpochs = new();
    private readonly ConcurrentDictionary<ulong, StrongBox<long>> _contextInvalidations = new();
    private long _translationEpoch;
    private int _fileDescriptor = -1;

    /// <summary>Reserves <paramref name="sizeInBytes"/> of machine memory (rounded up to whole frames).</summary>
    /// <param name="sizeInBytes">Size of the machine's RAM; more than zero and at most <see cref="MaxSizeInBytes"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">The size is zero or above <see cref="MaxSizeInBytes"/>.</exception>
    /// <exception cref="MachineMemoryExhaustedException">The host refused the reservation.</exception>
    public MachineMemory(ulong sizeInBytes)
        : this(sizeInBytes, MachineMemoryBacking.Anonymous)
    {
    }

    /// <summary>Reserves <paramref name="sizeInBytes"/> of machine memory with the given backing.</summary>
    /// <param name="sizeInBytes">Size of the machine's RAM; more than zero and at most <see cref="MaxSizeInBytes"/>.</param>
    /// <param name="backing">
    /// <see cref="MachineMemoryBacking.Anonymous"/> (the default: private to this process), or
    /// <see cref="MachineMemoryBacking.SharedFile"/>: a Linux memory file whose descriptor, <see cref="FileDescriptor"/>,
    /// another process maps to share the frames (a control domain mapping guest memory, as Xen's Dom0 does).
    /// </param>
    /// <exception cref="ArgumentOutOfRangeException">The size is zero or above <see cref="MaxSizeInBytes"/>.</exception>
    /// <exception cref="MachineMemoryExhaustedException">The host refused the reservation.</exception>
    /// <exception cref="PlatformNotSupportedException">A shared file was asked for on a host other than Linux.</exception>
    public MachineMemory(ulong sizeInBytes, MachineMemoryBacking backing)
    {
        ArgumentOutOfRangeException.ThrowIfZero(sizeInBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(sizeInBytes, MaxSizeInBytes);
        _frameCount = (sizeInBytes + Page.PageOffsetMask) >> Page.PageShift;
        _size = _frameCount << Page.PageShift;
        _usedBitmap = new ulong[(_frameCount + 63) / 64];
        ulong tail = _frameCount % 64;
        if (tail != 0)
        {
            _usedBitmap[^1] = ~0UL << (int)tail; // bits past the last frame never look free
        }

        _ownerOf = GC.AllocateUninitializedArray<ushort>(checked((int)_frameCount));
        Array.Fill(_limit, ulong.MaxValue);
        _freeFrames = _frameCount;
        _base = backing == MachineMemoryBacking.SharedFile ? HostMemory.ReserveShared(_size, out _fileDescriptor) : HostMemory.Reserve(_size);
    }

    /// <summary>
    /// The memory file behind <see cref="MachineMemoryBacking.SharedFile"/> memory (byte offset = machine address), or -1.
    /// Owned by this object: closed by <see cref="Dispose"/>; pass it on (e.g. with SCM_RIGHTS) to share the frames.
    /// </summary>
    public int FileDescriptor => _fileDescriptor;

    /// <summary>The largest machine this class can describe: 2^31 - 1 frames (just under 8 TiB), well inside the EPT's 46-bit physical-address width.</summary>
    public const ulong MaxSizeInBytes = (ulong)int.MaxValue << Page.PageShift;

    /// <summary>Releases the reservation if <see cref="Dispose"/> was not called.</summary>
    ~MachineMemory() => ReleaseReservation();

    /// <summary>Number of 4 KiB frames in the machine.</summary>
    public ulong FrameCount => _frameCount;

    /// <summary>Size of the machine's memory in bytes.</summary>
    public ulong SizeInBytes => _size;

    /// <summary>Number of frames not owned by anyone.</summary>
    public ulong FreeFrames => Volatile.Read(ref _freeFrames);

    /// <summary>Base of the host mapping, for walkers in this assembly (bounds are checked with <see cref="SizeInBytes"/>).</summary>
    internal byte* Base => _base;

    /// <summary>Bumped by <see cref="GuestPhysicalMemory.InvalidateAllContexts"/>: every translation cache over this memory compares it.</summary>
    internal ref long TranslationEpoch => ref _translationEpoch;

    /// <summary>The single-context invalidation counter shared by every translation cache of the EPT rooted at <paramref name="root"/>.</summary>
    internal StrongBox<long> ContextEpoch(MachineFrameNumber root) => _contextEpochs.GetOrAdd(root.Value, static _ => new StrongBox<long>());

    /// <summary>
    /// Counts every single-context invalidation of the EPT rooted at <paramref name="root"/>, whether it reached every
    /// accessor or only one (INVEPT on one logical processor); <see cref="EptTables"/> reuses retired tables after it moves.
    /// </summary>
    internal StrongBox<long> ContextInvalidations(MachineFrameNumber root) => _contextInvalidations.GetOrAdd(root.Value, static _ => new StrongBox<long>());

    /// <summary>Allocates one zeroed frame for <paramref name="owner"/>.</summary>
    /// <param name="owner">Who is charged for the frame.</param>
    /// <returns>The frame.</returns>
    /// <exception cref="MachineMemoryExhaustedException">No frame is free, or <paramref name="owner"/> is at its limit.</exception>
    public MachineFrameNumber AllocateFrame(FrameOwner owner)
    {
        if (!TryAllocateFrame(owner, out MachineFrameNumber frame))
        {
            throw Exhausted(owner, 1);
        }

        return frame;
    }

    /// <summary>Allocates one zeroed frame for <paramref name="owner"/>, or returns false when none is free or the owner is at its limit.</summary>
    /// <param name="owner">Who is charged for the frame.</param>
    /// <param name="frame">The frame on success.</param>
    /// <returns>True when a frame was allocated.</returns>
    public bool TryAllocateFrame(FrameOwner owner, out MachineFrameNumber frame)
    {
        lock (_lock)
        {
            frame = default;
            if (_freeFrames == 0 || _ownedCount[owner.DomainId] >= _limit[owner.DomainId])
            {
                return false;
            }

            ulong words = (ulong)_usedBitmap.Length;
            for (ulong n = 0; n < words; n++)
            {
                ulong w = (_searchHint + n) % words;
                ulong bits = _usedBitmap[w];
                if (bits != ulong.MaxValue)
                {
                    ulong index = (w * 64) + (ulong)BitOperations.TrailingZeroCount(~bits);
                    _searchHint = w;
                    Take(index, 1, owner);
                    frame = new MachineFrameNumber(index);
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>
    /// Allocates <paramref name="frameCount"/> physically contiguous zeroed frames whose first frame number
    /// is a multiple of <paramref name="alignmentInFrames"/> (512 for a frame that can back a 2 MiB EPT page).
    /// </summary>
    /// <param name="owner">Who is charged for the frames.</param>
    /// <param name="frameCount">Number of frames, at least 1.</param>
    /// <param name="alignmentInFrames">Alignment of the first frame number; a power of two.</param>
    /// <returns>The first frame of the run.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="frameCount"/> is zero or the alignment is not a power of two.</exception>
    /// <exception cref="MachineMemoryExhaustedException">No such run is free, or the owner would pass its limit.</exception>
    public MachineFrameNumber AllocateContiguous(FrameOwner owner, ulong frameCount, ulong alignmentInFrames = 1)
    {
        ArgumentOutOfRangeException.ThrowIfZero(frameCount);
        if (alignmentInFrames == 0 || !BitOperations.IsPow2(alignmentInFrames))
        {
            throw new ArgumentOutOfRangeException(nameof(alignmentInFrames), alignmentInFrames, "The alignment must be a power of two.");
        }

        lock (_lock)
        {
            ulong owned = _ownedCount[owner.DomainId];
            if (frameCount > _freeFrames || frameCount > _limit[owner.DomainId] || owned > _limit[owner.DomainId] - frameCount)
            {
                throw Exhausted(owner, frameCount);
            }

            ulong start = 0;
            while (start < _frameCount && _frameCount - start >= frameCount)
            {
                ulong used = FindUsed(start, start + frameCount);
                if (used == start + frameCount)
                {
                    Take(start, frameCount, owner);
                    return new MachineFrameNumber(start);
                }

                start = AlignUp(used + 1, alignmentInFrames);
            }

            throw Exhausted(owner, frameCount);
        }
    }

    /// <summary>Returns a frame to the free pool, uncharging its owner; its contents are zeroed before it can be allocated again.</summary>
    /// <param name="frame">An allocated frame.</param>
    /// <exception cref="ArgumentOutOfRangeException">The frame is outside the machine.</exception>
    /// <exception cref="InvalidOperationException">The frame is already free (a double free in the hypervisor).</exception>
    public void FreeFrame(MachineFrameNumber frame) => FreeContiguous(frame, 1);

    /// <summary>Returns a run of frames (all allocated, possibly to different owners) to the free pool, zeroing them.</summary>
    /// <param name="first">First frame of the run.</param>
    /// <param name="frameCount">Number of frames.</param>
    /// <exception cref="ArgumentOutOfRangeException">The run leaves the machine.</exception>
    /// <exception cref="InvalidOperationException">A frame of the run is already free; nothing is freed.</exception>
    public void FreeContiguous(MachineFrameNumber first, ulong frameCount)
    {
        if (first.Value >= _frameCount || frameCount > _frameCount - first.Value)
        {
            throw new ArgumentOutOfRangeException(nameof(first), first, "The frames are outside machine memory.");
        }

        lock (_lock)
        {
            for (ulong f = first.Value; f < first.Value + frameCount; f++)
            {
                if (!IsUsed(f))
                {
                    throw new InvalidOperationException($"{new MachineFrameNumber(f)} is already free.");
                }
            }

            // Scrub before the frames become allocatable (Xen scrubs freed domain pages the same way).
            byte* p = _base + (first.Value << Page.PageShift);
            ulong bytes = frameCount << Page.PageShift;
            if (frameCount < DiscardThresholdFrames || !HostMemory.Discard(p, bytes, _fileDescriptor >= 0))
            {
                for (ulong f = 0; f < frameCount; f++)
                {
                    new Span<byte>(p + (f << Page.PageShift), Page.PageSize).Clear();
                }
            }

            for (ulong f = first.Value; f < first.Value + frameCount; f++)
            {
                _ownedCount[_ownerOf[f]]--;
                _usedBitmap[f / 64] &= ~(1UL << (int)(f % 64));
            }

            _freeFrames += frameCount;
        }
    }

    /// <summary>Sets the most frames <paramref name="owner"/> may hold (Xen's <c>max_pages</c>); frames already held are kept.</summary>
    /// <param name="owner">The owner.</param>
    /// <param name="maxFrames">The limit; <see cref="ulong.MaxValue"/> for none.</param>
    public void SetLimit(FrameOwner owner, ulong maxFrames)
    {
        lock (_lock)
        {
            _limit[owner.DomainId] = maxFrames;
        }
    }

    /// <summary>The limit set for <paramref name="owner"/> (<see cref="ulong.MaxValue"/> when none).</summary>
    /// <param name="owner">The owner.</param>
    /// <returns>The most frames the owner may hold.</returns>
    public ulong GetLimit(FrameOwner owner)
    {
        lock (_lock)
        {
            return _limit[owner.DomainId];
        }
    }

    /// <summary>Number of frames currently charged to <paramref name="owner"/> (Xen's <c>tot_pages</c>).</summary>
    /// <param name="owner">The owner.</param>
    /// <returns>The frame count.</returns>
    public ulong FramesOwnedBy(FrameOwner owner)
    {
        lock (_lock)
        {
            return _ownedCount[owner.DomainId];
        }
    }

    /// <summary>Finds who owns <paramref name="frame"/>.</summary>
    /// <param name="frame">Any frame number.</param>
    /// <param name="owner">The owner when the frame is allocated.</param>
    /// <returns>False when the frame is free or outside the machine.</returns>
    public bool TryGetOwner(MachineFrameNumber frame, out FrameOwner owner)
    {
        lock (_lock)
        {
            if (frame.Value < _frameCount && IsUsed(frame.Value))
            {
                owner = new FrameOwner(_ownerOf[frame.Value]);
                return true;
            }

            owner = default;
            return false;
        }
    }

    /// <summary>True when <paramref name="frame"/> is inside the machine (allocated or not).</summary>
    /// <param name="frame">Any frame number.</param>
    /// <returns>Whether the frame exists.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsValid(MachineFrameNumber frame) => frame.Value < _frameCount;

    /// <summary>Host pointer to the first byte of the 4 KiB <paramref name="frame"/>.</summary>
    /// <param name="frame">A frame inside the machine.</param>
    /// <returns>The pointer; valid until this object is disposed.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The frame is outside the machine (a host-side programming error; guest input must be checked with <see cref="IsValid"/> first).</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* GetFramePointer(MachineFrameNumber frame)
    {
        if (frame.Value >= _frameCount)
        {
            ThrowInvalidFrame(frame);
        }

        return _base + (frame.Value << Page.PageShift);
    }

    /// <summary>The 4 KiB of <paramref name="frame"/> as a span.</summary>
    /// <param name="frame">A frame inside the machine.</param>
    /// <returns>A span over the frame's bytes.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The frame is outside the machine.</exception>
    public Span<byte> GetFrame(MachineFrameNumber frame) => new(GetFramePointer(frame), Page.PageSize);

    /// <summary>Reads machine-physical memory, for walkers of structures that live there (EPT tables, VMCS bitmaps).</summary>
    /// <param name="machineAddress">Machine-physical address of the first byte.</param>
    /// <param name="destination">Where to copy; its length is the byte count.</param>
    /// <returns>False, copying nothing, when any byte lies outside machine memory.</returns>
    public bool TryReadMachinePhysical(ulong machineAddress, Span<byte> destination)
    {
        if (machineAddress >= _size || (ulong)destination.Length > _size - machineAddress)
        {
            return false;
        }

        new ReadOnlySpan<byte>(_base + machineAddress, destination.Length).CopyTo(destination);
        return true;
    }

    /// <summary>Writes machine-physical memory (bounds-checked).</summary>
    /// <param name="machineAddress">Machine-physical address of the first byte.</param>
    /// <param name="source">The bytes to write.</param>
    /// <returns>False, writing nothing, when any byte lies outside machine memory.</returns>
    public bool TryWriteMachinePhysical(ulong machineAddress, ReadOnlySpan<byte> source)
    {
        if (machineAddress >= _size || (ulong)source.Length > _size - machineAddress)
        {
            return false;
        }

        source.CopyTo(new Span<byte>(_base + machineAddress, source.Length));
        return true;
    }

    /// <summary>
    /// Unmaps the machine's memory. Every pointer and span handed out before becomes invalid; translation caches over this
    /// memory are invalidated, and later guest-physical accesses fail as misconfigurations instead of touching the old mapping.
    /// </summary>
    public void Dispose()
    {
        ReleaseReservation();
        GC.SuppressFinalize(this);
    }

    private void ReleaseReservation()
    {
        byte* p = _base;
        ulong size = _size;
        _frameCount = 0;
        _size = 0;
        _base = null;
        Interlocked.Increment(ref _translationEpoch); // cached host pointers into the mapping must not be used again
        if (p != null)
        {
            HostMemory.Release(p, size);
        }

        int fd = Interlocked.Exchange(ref _fileDescriptor, -1);
        if (fd >= 0)
        {
            HostMemory.CloseFile(fd);
        }
    }

    private bool IsUsed(ulong frame) => (_usedBitmap[frame / 64] & (1UL << (int)(frame % 64))) != 0;

    private void Take(ulong first, ulong count, FrameOwner owner)
    {
        for (ulong f = first; f < first + count; f++)
        {
            _usedBitmap[f / 64] |= 1UL << (int)(f % 64);
            _ownerOf[f] = owner.DomainId;
        }

        _ownedCount[owner.DomainId] += count;
        _freeFrames -= count;
    }

    /// <summary>First allocated frame in [start, end), or end when all are free.</summary>
    private ulong FindUsed(ulong start, ulong end)
    {
        ulong f = start;
        while (f < end)
        {
            ulong word = _usedBitmap[f / 64] >> (int)(f % 64);
            if (word != 0)
            {
                ulong hit = f + (ulong)BitOperations.TrailingZeroCount(word);
                return Math.Min(hit, end);
            }

            f = (f | 63) + 1;
        }

        return end;
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);

    private MachineMemoryExhaustedException Exhausted(FrameOwner owner, ulong count) =>
        new($"Cannot allocate {count} frame(s) for {owner}: {_freeFrames} free, owner holds {_ownedCount[owner.DomainId]} of limit {(_limit[owner.DomainId] == ulong.MaxValue ? "none" : _limit[owner.DomainId].ToString(System.Globalization.CultureInfo.InvariantCulture))}.")
        {
            Owner = owner,
            RequestedFrames = count,
        };

    private static void ThrowInvalidFrame(MachineFrameNumber frame) =>
        throw new ArgumentOutOfRangeException(nameof(frame), frame, "The frame is outside machine memory.");
}
