using VmmKit.Ept;

namespace VmmKit.Hypercall;

/// <summary>
/// <see cref="IGuestVirtualMemory"/> for one vCPU: a guest virtual address goes through the guest's own paging
/// (VmmKit.Ept's <see cref="GuestPageWalker"/>: 32-bit, PAE or 4-level, as the vCPU's registers select) and then the
/// domain's EPT, as Xen's <c>hvm_copy_from_guest_linear</c>/<c>hvm_copy_to_guest_linear</c> do for hypercall
/// arguments. The copy is a supervisor access (Xen's <c>copy_from_guest</c> passes no user-mode PFEC): R/W counts only
/// with CR0.WP, SMAP applies unless the guest set RFLAGS.AC (Linux's privcmd does STAC around a hypercall), and the
/// walk sets accessed and dirty bits as the processor would.
/// </summary>
/// <remarks>
/// A false return may follow a partial copy (the pages before the faulting one), as in Xen; the caller turns it into
/// -EFAULT and no fault is injected into the guest.
/// </remarks>
public sealed unsafe class GuestLinearMemory : IGuestVirtualMemory
{
    private readonly GuestPhysicalMemory _memory;
    private readonly Func<GuestPagingRegisters> _registers;

    /// <summary>Creates the view.</summary>
    /// <param name="memory">The domain's guest-physical memory (its EPT).</param>
    /// <param name="registers">
    /// Returns the vCPU's current paging registers; called once per copy (a VMM over VmmKit.Vmx passes
    /// <c>() =&gt; vmcs.GuestPagingRegisters</c>).
    /// </param>
    public GuestLinearMemory(GuestPhysicalMemory memory, Func<GuestPagingRegisters> registers)
    {
        _memory = memory ?? throw new ArgumentNullException(nameof(memory));
        _registers = registers ?? throw new ArgumentNullException(nameof(registers));
    }

    /// <inheritdoc/>
    public bool TryRead(ulong gva, Span<byte> destination)
    {
        GuestPagingRegisters registers = _registers();
        while (!destination.IsEmpty)
        {
            int chunk = ChunkLength(gva, destination.Length);
            if (!TryTranslate(registers, gva, GuestPagingAccess.Read, out GuestPhysicalAddress gpa)
                || !_memory.TryRead(gpa, destination[..chunk], out _))
                return false;
            destination = destination[chunk..];
            gva += (ulong)chunk;
        }

        return true;
    }

    /// <inheritdoc/>
    public bool TryWrite(ulong gva, ReadOnlySpan<byte> source)
    {
        GuestPagingRegisters registers = _registers();
        while (!source.IsEmpty)
        {
            int chunk = ChunkLength(gva, source.Length);
            if (!TryTranslate(registers, gva, GuestPagingAccess.Write, out GuestPhysicalAddress gpa)
                || !_memory.TryWrite(gpa, source[..chunk], out _))
                return false;
            source = source[chunk..];
            gva += (ulong)chunk;
        }

        return true;
    }

    /// <inheritdoc/>
    public byte* TranslateToHost(ulong gva, int length, bool write)
    {
        if ((uint)(length - 1) >= Page.PageSize || (gva & Page.PageOffsetMask) + (uint)length > Page.PageSize)
        {
            return null; // more than one page: TryRead/TryWrite translate each
        }

        GuestPagingRegisters registers = _registers();
        return TryTranslate(registers, gva, write ? GuestPagingAccess.Write : GuestPagingAccess.Read, out GuestPhysicalAddress gpa)
            ? _memory.TranslateToHost(gpa, length, write ? EptAccess.Write : EptAccess.Read)
            : null;
    }

    /// <summary>A chunk never crosses a 4 KiB page: each page is translated on its own.</summary>
    private static int ChunkLength(ulong gva, int remaining) => (int)Math.Min((ulong)remaining, (ulong)Page.PageSize - (gva & Page.PageOffsetMask));

    private bool TryTranslate(in GuestPagingRegisters registers, ulong gva, GuestPagingAccess access, out GuestPhysicalAddress gpa)
    {
        // With paging off, a linear address is 32 bits wide (SDM Vol. 3A §3.3.6); a longer one is not the guest's.
        if (!registers.PagingEnabled && gva > uint.MaxValue)
        {
            gpa = default;
            return false;
        }

        return GuestPageWalker.Translate(_memory, registers, gva, access, GuestPagingPrivilege.Supervisor, out gpa, out _, out _)
            == GuestPagingResult.Translated;
    }
}
