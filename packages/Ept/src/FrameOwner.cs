namespace VmmKit.Ept;

/// <summary>
/// The owner of a machine frame for accounting: a Xen domain id (<c>domid_t</c>), or one of
/// Xen's reserved ids such as <see cref="Hypervisor"/> for frames the hypervisor keeps for itself.
/// </summary>
/// <param name="DomainId">The domain id.</param>
public readonly record struct FrameOwner(ushort DomainId)
{
    /// <summary><c>DOMID_XEN</c> (0x7FF2, xen.h): frames owned by the hypervisor itself.</summary>
    public static FrameOwner Hypervisor => new(0x7FF2);

    /// <summary>Formats as <c>d&lt;id&gt;</c> like Xen's logs, or <c>DOMID_XEN</c>.</summary>
    /// <returns>The owner's name.</returns>
    public override string ToString() => DomainId == 0x7FF2 ? "DOMID_XEN" : $"d{DomainId}";
}
