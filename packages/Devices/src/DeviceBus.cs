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
    /// Dispatches a read of <c>data.Length</c> bytes at <paramref name="address"/>. Returns false,
    /// leaving <paramref name="data"/> unchanged, when no device decodes the whole access (none at the
    /// address, or the access runs past the device's range); the caller then does what its bus does
    /// for an unclaimed access.
    /// </summary>
    /// <param name="address">The first address accessed.</param>
    /// <param name="data">Receives the value.</param>
    /// <returns>True when a device handled the access.</returns>
    public bool TryRead(ulong address, Span<byte> data)
    {
        if (!TryClaim(address, data.Length, out var range, out var device))
            return false;
        device.Read(range.Base, address - range.Base, data);
        return true;
    }

    /// <summary>Dispatches a write; returns false (nothing written) like <see cref="TryRead"/>.</summary>
    /// <param name="address">The first address accessed.</param>
    /// <param name="data">The value.</param>
    /// <returns>True when a device handled the access.</returns>
    public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        if (!TryClaim(address, data.Length, out var range, out var device))
            return false;
        device.Write(range.Base, address - range.Base, data);
        return true;
    }

    private bool TryClaim(ulong address, int length, out BusRange range, out IBusDevice device)
    {
        device = null!;
        if (length == 0 || !TryGetDevice(address, out range, out var d))
        {
            range = default;
            return false;
        }

        device = d!;
        return (ulong)length - 1 <= range.Last - address;
    }

    private readonly record struct Entry(BusRange Range, IBusDevice Device);
}
