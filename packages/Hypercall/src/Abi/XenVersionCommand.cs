namespace VmmKit.Hypercall;

/// <summary>
/// Sub-operations of <c>__HYPERVISOR_xen_version(cmd, arg)</c> (<c>XENVER_*</c>, xen/version.h).
/// All return 0 on success except <see cref="Version"/>, <see cref="Pagesize"/> and <see cref="BuildId"/>.
/// </summary>
public enum XenVersionCommand : uint
{
    /// <summary><c>XENVER_version</c>: arg is NULL; returns <c>major &lt;&lt; 16 | minor</c>.</summary>
    Version = 0,
    /// <summary><c>XENVER_extraversion</c>: arg is <see cref="XenExtraversion"/> (16 chars, e.g. ".0").</summary>
    Extraversion = 1,
    /// <summary><c>XENVER_compile_info</c>: arg is <see cref="XenCompileInfo"/>.</summary>
    CompileInfo = 2,
    /// <summary><c>XENVER_capabilities</c>: arg is <see cref="XenCapabilitiesInfo"/> (e.g. "hvm-3.0-x86_64 hvm-3.0-x86_32").</summary>
    Capabilities = 3,
    /// <summary><c>XENVER_changeset</c>: arg is <see cref="XenChangesetInfo"/>.</summary>
    Changeset = 4,
    /// <summary><c>XENVER_platform_parameters</c>: arg is <see cref="XenPlatformParameters"/> (<see cref="CompatXenPlatformParameters"/> for 32-bit callers).</summary>
    PlatformParameters = 5,
    /// <summary><c>XENVER_get_features</c>: arg is <see cref="XenFeatureInfo"/>; fills the requested 32-bit submap of <c>XENFEAT_*</c>.</summary>
    GetFeatures = 6,
    /// <summary><c>XENVER_pagesize</c>: arg is NULL; returns the page size (4096).</summary>
    Pagesize = 7,
    /// <summary><c>XENVER_guest_handle</c>: arg is <see cref="XenDomainHandle"/> (the domain's 16-byte UUID).</summary>
    GuestHandle = 8,
    /// <summary><c>XENVER_commandline</c>: arg is <see cref="XenCommandline"/> (1024 chars; privileged in Xen's default policy).</summary>
    Commandline = 9,
    /// <summary><c>XENVER_build_id</c>: arg is <see cref="XenBuildId"/> followed by <c>len</c> bytes; returns the number of bytes written.</summary>
    BuildId = 10,
}
