using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>HVMOP_pagetable_dying</c> (xen/include/public/hvm/hvm_op.h; do_hvm_op in xen/arch/x86/hvm/hvm.c): a hint that
/// the top-level page table at <c>gpa</c> is about to be freed, which only Xen's shadow paging uses. This hypervisor
/// translates guest-physical memory with EPT (Xen's HAP), so it answers as Xen does then: -EFAULT for an unreadable
/// argument, -ESRCH for a domain that does not exist, -EOPNOTSUPP for another domain, and -EINVAL for the caller itself
/// (the hint is not taken). Linux calls it once at boot to decide whether to install its exit_mmap hook, and logs
/// "HVMOP_pagetable_dying not supported" at KERN_DEBUG, as under Xen with HAP.
/// </summary>
internal static class PagetableDyingHypercall
{
    /// <summary>HVMOP_pagetable_dying(arg).</summary>
    public static long Handle(ref HypercallCall<VirtualCpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out XenHvmPagetableDying a))
            return XenErrno.EFAULT.Negated();
        var self = call.Caller.Domain;
        // rcu_lock_domain_by_any_id: DOMID_SELF is the caller; any other id must name a live domain.
        if (a.Domid != DomainId.Self && a.Domid != self.Id)
            return self.Machine.Domains.Any(d => d.Id == a.Domid) ? XenErrno.EOPNOTSUPP.Negated() : XenErrno.ESRCH.Negated();
        // is_hvm_domain(d) && paging_mode_shadow(d) is false under EPT: rc stays -EINVAL.
        return XenErrno.EINVAL.Negated();
    }
}

/// <summary><c>struct xen_hvm_pagetable_dying</c> (xen/hvm/hvm_op.h): 16 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct XenHvmPagetableDying
{
    /// <summary><c>domid</c>: the domain whose page table dies (DOMID_SELF or the caller's id).</summary>
    public ushort Domid;

    /// <summary><c>pad[3]</c>: aligns <see cref="Gpa"/> to 8 bytes.</summary>
    public ushort Pad0, Pad1, Pad2;

    /// <summary><c>gpa</c>: guest-physical address of the dying top-level page table.</summary>
    public ulong Gpa;
}
