namespace VmmKit.Dom0.Xen;

/// <summary>
/// Page-granular buffers in Dom0's own memory for hypercall arguments (what Linux's privcmd calls hypercall buffers):
/// a pointer argument is the buffer's Dom0 guest-physical address, so the hypervisor reads and writes Xen's structs in
/// place. Page 0 is never handed out: address 0 is Xen's NULL handle (<c>guest_handle_is_null</c>), which e.g.
/// setvcpucontext takes as "reset the vCPU" and gethvmcontext as "tell me the size". Thread-safe; a buffer goes back
/// with <see cref="HypercallBuffer.Dispose"/>.
/// </summary>
public sealed class HypercallBuffers
{
    private readonly HypervisorChannel _channel;
    private readonly bool[] _used;
    private readonly object _lock = new();

    /// <summary>Buffers over the first <paramref name="pages"/> pages of Dom0's memory.</summary>
    public HypercallBuffers(HypervisorChannel channel, int pages)
    {
        _channel = channel;
        _used = new bool[Math.Min(pages, (int)channel.Dom0Pages)];
    }

    /// <summary>Takes <paramref name="bytes"/> (rounded up to pages), zeroed.</summary>
    /// <exception cref="InvalidOperationException">Dom0's buffer pages are exhausted.</exception>
    public HypercallBuffer Rent(int bytes)
    {
        int pages = Math.Max(1, (bytes + 4095) / 4096);
        lock (_lock)
        {
            for (int start = 1; start + pages <= _used.Length; start++)
            {
                int n = 0;
                while (n < pages && !_used[start + n])
                    n++;
                if (n == pages)
                {
                    for (int i = 0; i < pages; i++)
                        _used[start + i] = true;
                    var buffer = new HypercallBuffer(this, (ulong)start << 12, pages);
                    buffer.Span.Clear();
                    return buffer;
                }

                start += n;
            }
        }

        throw new InvalidOperationException("Dom0's hypercall buffer pages are exhausted");
    }

    internal Span<byte> Memory(ulong gpa, int length) => _channel.Dom0Memory(gpa, length);

    internal void Return(ulong gpa, int pages)
    {
        lock (_lock)
        {
            for (int i = 0; i < pages; i++)
                _used[(int)(gpa >> 12) + i] = false;
        }
    }
}

/// <summary>A buffer in Dom0's memory: <see cref="Address"/> is what a hypercall argument names.</summary>
public sealed class HypercallBuffer : IDisposable
{
    private readonly HypercallBuffers _owner;
    private readonly int _pages;
    private bool _returned;

    internal HypercallBuffer(HypercallBuffers owner, ulong address, int pages)
    {
        _owner = owner;
        Address = address;
        _pages = pages;
    }

    /// <summary>The buffer's Dom0 guest-physical address.</summary>
    public ulong Address { get; }

    /// <summary>The bytes (shared with the hypervisor).</summary>
    public Span<byte> Span => _owner.Memory(Address, _pages * 4096);

    /// <summary>The buffer as a <typeparamref name="T"/> at <paramref name="offset"/>.</summary>
    public ref T As<T>(int offset = 0) where T : unmanaged =>
        ref System.Runtime.InteropServices.MemoryMarshal.AsRef<T>(Span[offset..]);

    /// <summary>Returns the pages.</summary>
    public void Dispose()
    {
        if (_returned)
            return;
        _returned = true;
        _owner.Return(Address, _pages);
    }
}
