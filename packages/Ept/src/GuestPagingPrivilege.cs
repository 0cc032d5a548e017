namespace VmmKit.Ept;

/// <summary>Who makes a linear-address access, for the access-rights rules of guest paging (SDM Vol. 3A §4.6).</summary>
public enum GuestPagingPrivilege
{
    /// <summary>An explicit access at CPL 0, 1 or 2 (SMAP applies unless RFLAGS.AC = 1). Also a hypervisor's copy on the guest's behalf, as Xen's <c>hvm_copy_*_guest_linear</c> makes it.</summary>
    Supervisor,

    /// <summary>An explicit access at CPL 3: U/S and R/W of every level apply, whatever CR0.WP says.</summary>
    User,

    /// <summary>An implicit supervisor access (GDT, LDT, IDT, TSS, the stack of an event delivered to CPL 0): supervisor rights at any CPL, and SMAP applies whatever RFLAGS.AC says.</summary>
    ImplicitSupervisor,
}
