using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A vCPU's memory by guest linear address, for hypercall arguments (Xen's <c>copy_from_guest</c>).
/// With CR0.PG = 0 (the PVH entry state, SDM Vol. 3A §4.1.1) a linear address is the guest-physical
/// address; the access then goes through the domain's EPT, so a bad pointer fails instead of
/// reaching another domain's frames. Guests that turned paging on get a walk of their page tables
/// (<see cref="GuestPageWalker"/>).
/// </summary>
internal sealed class GuestLinearMemory(VirtualCpu vcpu) : IGuestVirtualMemory
{
    /// <inheritdoc/>
    public bool TryRead(ulong gva, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            int chunk = ChunkLength(gva, destination.Length);
            if (!Translate(gva, write: false, out ulong gpa)
                || !vcpu.Domain.Physical.TryRead(new GuestPhysicalAddress(gpa), destination[..chunk], out _))
                return false;
            destination = destination[chunk..];
            gva += (ulong)chunk;
        }

        return true;
    }

    /// <inheritdoc/>
    public bool TryWrite(ulong gva, ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            int chunk = ChunkLength(gva, source.Length);
            if (!Translate(gva, write: true, out ulong gpa)
                || !vcpu.Domain.Physical.TryWrite(new GuestPhysicalAddress(gpa), source[..chunk], out _))
                return false;
            source = source[chunk..];
            gva += (ulong)chunk;
        }

        return true;
    }

    private static int ChunkLength(ulong gva, int remaining) => (int)Math.Min((ulong)remaining, 4096 - (gva & 4095));

    private bool Translate(ulong gva, bool write, out ulong gpa)
    {
        var vmcs = vcpu.Vmcs;
        ulong cr0 = vmcs.Read(VmcsField.GuestCr0);
        if ((cr0 & VmcsBuilder.Cr0Pg) == 0)
        {
            gpa = gva;
            return gva <= uint.MaxValue;
        }

        return GuestPageWalker.TryTranslate(vcpu.Domain.Physical, cr0, vmcs.Read(VmcsField.GuestCr3), vmcs.Read(VmcsField.GuestCr4),
            vmcs.Read(VmcsField.GuestIa32Efer), gva, write, out gpa);
    }
}
