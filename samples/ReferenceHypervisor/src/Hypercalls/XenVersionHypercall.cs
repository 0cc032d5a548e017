using System.Runtime.InteropServices;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Cpu;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>__HYPERVISOR_xen_version(cmd, arg)</c> (xen/common/kernel.c, <c>do_xen_version</c>): every
/// XENVER_* sub-op. XENVER_commandline and XENVER_build_id are privileged in Xen's default XSM
/// policy: an unprivileged domain reads "&lt;denied&gt;" as its command line and gets -EPERM for the build id.
/// </summary>
internal static class XenVersionHypercall
{
    /// <summary>Handles every sub-op (registered for XENVER_version..XENVER_build_id).</summary>
    public static long Handle(ref HypercallCall<VirtualCpu> call)
    {
        ulong arg = call.Argument(1);
        switch ((XenVersionCommand)call.SubOp)
        {
            case XenVersionCommand.Version:
                return XenIdentity.VersionNumber;

            case XenVersionCommand.Extraversion:
            {
                XenExtraversion extra = default;
                XenString.Write(extra, XenIdentity.ExtraVersion);
                return Copy(ref call, arg, in extra);
            }

            case XenVersionCommand.CompileInfo:
            {
                XenCompileInfo info = default;
                XenString.Write(info.Compiler, XenIdentity.Compiler);
                XenString.Write(info.CompileBy, XenIdentity.CompileBy);
                XenString.Write(info.CompileDomain, XenIdentity.CompileDomain);
                XenString.Write(info.CompileDate, XenIdentity.CompileDate);
                return Copy(ref call, arg, in info);
            }

            case XenVersionCommand.Capabilities:
            {
                XenCapabilitiesInfo caps = default;
                XenString.Write(caps, XenIdentity.Capabilities);
                return Copy(ref call, arg, in caps);
            }

            case XenVersionCommand.Changeset:
            {
                XenChangesetInfo changeset = default;
                XenString.Write(changeset, XenIdentity.Changeset);
                return Copy(ref call, arg, in changeset);
            }

            case XenVersionCommand.PlatformParameters:
                return call.Abi == HypercallAbi.Native64
                    ? Copy(ref call, arg, new XenPlatformParameters { VirtStart = XenIdentity.VirtStart64 })
                    : Copy(ref call, arg, new CompatXenPlatformParameters { VirtStart = XenIdentity.VirtStart32 });

            case XenVersionCommand.GetFeatures:
            {
                if (!call.TryCopyFromGuest(arg, out XenFeatureInfo fi))
                    return XenErrno.EFAULT.Negated();
                if (fi.SubmapIdx != 0)
                    return XenErrno.EINVAL.Negated();   // do_xen_version: only submap 0 exists
                fi.Submap = HvmFeatures | (call.Caller.Domain.IsPrivileged ? 1u << (int)XenFeature.Dom0 : 0);
                return Copy(ref call, arg, in fi);
            }

            case XenVersionCommand.Pagesize:
                return arg == 0 ? 4096 : XenErrno.EINVAL.Negated();   // do_xen_version: the handle must be null

            case XenVersionCommand.GuestHandle:
            {
                // do_xen_version: the domain's handle, the UUID XEN_DOMCTL_createdomain set. A domain the CLI built has
                // none: a stable one is derived from its id.
                if (call.Caller.Domain.Handle != Guid.Empty)
                    return Copy(ref call, arg, call.Caller.Domain.Handle);
                XenDomainHandle handle = default;
                Span<byte> bytes = handle;
                bytes[0] = 0x76; bytes[1] = 0x6d; bytes[2] = 0x6d; bytes[3] = 0x6b;      // "vmmk"
                bytes[14] = (byte)(call.Caller.Domain.Id >> 8);
                bytes[15] = (byte)call.Caller.Domain.Id;
                return Copy(ref call, arg, in handle);
            }

            case XenVersionCommand.Commandline:
            {
                // do_xen_version: a domain xsm_xen_version denies gets xen_deny()'s text with its NUL, and 0; the
                // privileged one the command line (this hypervisor has none: the 1024-byte array of zeros).
                if (!call.Caller.Domain.IsPrivileged)
                    return call.TryCopyToGuest(arg, "<denied>\0"u8) ? 0 : XenErrno.EFAULT.Negated();
                XenCommandline line = default;
                return Copy(ref call, arg, in line);
            }

            case XenVersionCommand.BuildId:
                return XenErrno.EPERM.Negated();

            default:
                return XenErrno.ENOSYS.Negated();
        }
    }

    /// <summary>
    /// XENFEAT_* bits of submap 0 for an HVM/PVH guest (xen/include/public/features.h), as Xen 4.17's
    /// <c>do_xen_version</c> computes them for a translated HVM domain without PIRQs: vNUMA memory ops
    /// (XENMEM_get_vnumainfo), writable page tables, auto-translated physmap, the callback vector, the
    /// safe pvclock and not direct-mapped; the hardware domain adds XENFEAT_dom0.
    /// </summary>
    private const uint HvmFeatures =
        (1u << (int)XenFeature.MemoryOpVnodeSupported) |
        (1u << (int)XenFeature.WritablePageTables) | (1u << (int)XenFeature.AutoTranslatedPhysmap) |
        (1u << (int)XenFeature.HvmCallbackVector) | (1u << (int)XenFeature.HvmSafePvclock) |
        (1u << (int)XenFeature.NotDirectMapped);

    private static long Copy<T>(ref HypercallCall<VirtualCpu> call, ulong gva, in T value) where T : unmanaged =>
        call.TryCopyToGuest(gva, in value) ? 0 : XenErrno.EFAULT.Negated();
}
