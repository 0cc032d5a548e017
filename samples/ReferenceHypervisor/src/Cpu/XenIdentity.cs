namespace VmmKit.ReferenceHypervisor.Cpu;

/// <summary>What this hypervisor says it is, through CPUID and XENVER_* (xen/include/public/version.h).</summary>
internal static class XenIdentity
{
    /// <summary>The Xen version we implement the interface of (4.17, Debian 12's Xen).</summary>
    public const int Major = 4, Minor = 17;

    /// <summary>XENVER_version's value: major &lt;&lt; 16 | minor.</summary>
    public const uint VersionNumber = (Major << 16) | Minor;

    /// <summary>XENVER_extraversion.</summary>
    public const string ExtraVersion = ".0-vmmkit";

    /// <summary>XENVER_capabilities: the guest types this hypervisor runs.</summary>
    public const string Capabilities = "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64";

    /// <summary>XENVER_changeset.</summary>
    public const string Changeset = "VmmKit reference hypervisor";

    /// <summary>XENVER_compile_info fields.</summary>
    public const string Compiler = ".NET 10 (C#)", CompileBy = "vmmkit", CompileDomain = "vmmkit.invalid", CompileDate = "2026";

    /// <summary>HYPERVISOR_VIRT_START for 64-bit callers (xen/include/public/arch-x86/xen-x86_64.h).</summary>
    public const ulong VirtStart64 = 0xFFFF_8000_0000_0000;

    /// <summary>
    /// HYPERVISOR_COMPAT_VIRT_START for a 32-bit caller: Xen 4.17's <c>arch_domain_create</c> sets it to ~0 for a domain
    /// that is not PV (0xF5800000 is a 32-bit PV domain's), and <c>compat_xen_version</c> answers it as virt_start.
    /// </summary>
    public const uint VirtStart32 = 0xFFFF_FFFF;
}
