namespace VmmKit.Devices;

/// <summary>
/// An address space with devices registered on non-overlapping ranges (rust-vmm vm-device's
/// <c>Bus</c>): a port-I/O bus (addresses 0-0xFFFF) or an MMIO bus (guest-physical addresses).
/// Registration refuses an empty, wrapping, out-of-bus or overlapping range. Dispatch finds the
/// device by binary search in a sorted array and allocates nothing; registration replaces the array
/// (copy on write), so a vCPU thread may dispatch while another thread registers.
/// </summary>
public sealed class DeviceBus
{
    private readonly object _lock = new();
    private Entry[] _entries = [];

    /// <summary>Creates a bus whose highest address is <paramref name="lastAddress"/>.</summary>
    /// <param name="lastAddress">0xFFFF for port I/O, <see cref="ulong.MaxValue"/> (or the guest's physical-address limit) for MMIO.</param>
    public DeviceBus(ulong lastAddress) => LastAddress = lastAddress;

    /// <summary>The highest address on the bus.</summary>
    public ulong LastAddress { get; }

    /// <summary>Number of registered ranges.</summary>
    public int Count => Volatile.Read(ref _entries).Length;

    /// <summary>
    /// Registers <paramref name="device"/> on <paramref name="range"/>. Returns false, registering
    /// nothing, when the range is empty, wraps, ends above <see cref="LastAddress"/>, or overlaps a
    /// range already registered.
    /// </summary>
    /// <param name="range">The addresses the device decodes.</param>
    /// <param name="device">The device.</param>
    /// <returns>True when registered.</returns>
    public bool TryRegister(BusRange range, IBusDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!range.IsValid || range.Last > LastAddress)
            return false;
        lock (_lock)
        {
            var old = _entries;
            int at = 0;
            while (at < old.Length && old[at].Range.Base < range.Base)
                at++;
            if ((at > 0 && old[at - 1].Range.Overlaps(range)) || (at < old.Length && old[at].Range.Overlaps(range)))
                return false;
            var next = new Entry[old.Length + 1];
            Array.Copy(old, next, at);
            next[at] = new Entry(range, device);
            Array.Copy(old, at, next, at + 1, old.Length - at);
            Volatile.Write(ref _entries, next);
            return true;
        }
    }

    /// <summary>Removes the range that starts at <paramref name="baseAddress"/>.</summary>
    /// <param name="baseAddress">The base the device was registered at.</param>
    /// <returns>False when no range starts there.</returns>
    public bool Unregister(ulong baseAddress)
    {
        lock (_lock)
        {
            var old = _entries;
            int at = Array.FindIndex(old, e => e.Range.Base == baseAddress);
            if (at < 0)
                return false;
            var next = new Entry[old.Length - 1];
            Array.Copy(old, next, at);
            Array.Copy(old, at + 1, next, at, old.Length - at - 1);
            Volatile.Write(ref _entries, next);
            return true;
        }
    }

    /// <summary>Finds the device that decodes <paramref name="address"/>.</summary>
    /// <param name="address">The address.</param>
    /// <param name="range">The device's registered range.</param>
    /// <param name="device">The device, or null.</param>
    /// <returns>True when a device decodes the address.</returns>
    public bool TryGetDevice(ulong address, out BusRange range, out IBusDevice? device)
    {
        var entries = Volatile.Read(ref _entries);
        int lo = 0, hi = entries.Length - 1;
        while (lo <= hi)
        {
            int mid = (int)((uint)(lo + hi) >> 1);
            var r = entries[mid].Range;
            if (address < r.Base)
                hi = mid - 1;
            else if (address > r.Last)
                lo = mid + 1;
            else
            {
                range = r;
                device = entries[mid].Device;
                return true;
            }
        }

        range = default;
        device = null;
        return false;
    }

    /// <summary>
    /// Dispatches a read of <c>data.Length</c> bytes at <paramref name="address"/>. An access that runs past a
    /// device's range, or over several ranges, is split at the range boundaries (as QEMU's memory core splits at
    /// regions and Xen's emulator at pages): each device fills its own part, and the bytes no device decodes keep the
    /// value the caller put there, which then does what its bus does for them.
    /// </summary>
    /// <param name="address">The first address accessed.</param>
    /// <param name="data">Receives the value.</param>
    /// <returns>True when a device decoded at least one byte; false when none did (<paramref name="data"/> unchanged).</returns>
    public bool TryRead(ulong address, Span<byte> data)
    {
        var entries = Volatile.Read(ref _entries);
        bool any = false;
        int done = 0;
        while (NextPart(entries, address, data.Length, ref done, out int index, out int length))
        {
            var r = entries[index].Range;
            ulong at = address + (ulong)done;
            entries[index].Device.Read(r.Base, at - r.Base, data.Slice(done, length));
            done += length;
            any = true;
        }

        return any;
    }

    /// <summary>Dispatches a write, split at range boundaries like <see cref="TryRead"/>; bytes no device decodes are dropped.</summary>
    /// <param name="address">The first address accessed.</param>
    /// <param name="data">The value.</param>
    /// <returns>True when a device decoded at least one byte.</returns>
    public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        var entries = Volatile.Read(ref _entries);
        bool any = false;
        int done = 0;
        while (NextPart(entries, address, data.Length, ref done, out int index, out int length))
        {
            var r = entries[index].Range;
            ulong at = address + (ulong)done;
            entries[index].Device.Write(r.Base, at - r.Base, data.Slice(done, length));
            done += length;
            any = true;
        }

        return any;
    }

    // The next part of an access a device decodes: skips the bytes from done on that no range holds; false when none is
    // left (the access never wraps past the top of the address space).
    private static bool NextPart(Entry[] entries, ulong address, int size, ref int done, out int index, out int length)
    {
        index = length = 0;
        if (done >= size || (ulong)done > ulong.MaxValue - address)
            return false;
        ulong at = address + (ulong)done;
        ulong left = (ulong)(size - done) - 1;                    // the access's last byte is at + left, if it fits
        ulong last = at > ulong.MaxValue - left ? ulong.MaxValue : at + left;

        // The first range that ends at or after the address: it holds the address or starts after it.
        int lo = 0, hi = entries.Length;
        while (lo < hi)
        {
            int mid = (int)((uint)(lo + hi) >> 1);
            if (entries[mid].Range.Last < at)
                lo = mid + 1;
            else
                hi = mid;
        }

        if (lo == entries.Length || entries[lo].Range.Base > last)
            return false;
        var r = entries[lo].Range;
        ulong start = Math.Max(r.Base, at);
        done += (int)(start - at);
        index = lo;
        length = (int)(Math.Min(r.Last, last) - start) + 1;
        return true;
    }

    private readonly record struct Entry(BusRange Range, IBusDevice Device);
}
