using VmmKit.TestSupport;
using VmmKit.XenStore.Transports;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>Our constants and offsets against gcc and xen/io/xs_wire.h.</summary>
public class LayoutTests
{
    private static readonly string[] Headers = ["xen/xen.h", "xen/io/xs_wire.h"];

    [Fact]
    public void Xenstore_domain_interface_layout_matches_xs_wire_h()
    {
        var v = XenAbiLayout.Evaluate(Headers,
        [
            "sizeof(struct xenstore_domain_interface)",
            "offsetof(struct xenstore_domain_interface, req)",
            "offsetof(struct xenstore_domain_interface, rsp)",
            "offsetof(struct xenstore_domain_interface, req_cons)",
            "offsetof(struct xenstore_domain_interface, req_prod)",
            "offsetof(struct xenstore_domain_interface, rsp_cons)",
            "offsetof(struct xenstore_domain_interface, rsp_prod)",
            "offsetof(struct xenstore_domain_interface, server_features)",
            "offsetof(struct xenstore_domain_interface, connection)",
            "offsetof(struct xenstore_domain_interface, error)",
            "XENSTORE_RING_SIZE",
        ]);
        Assert.Equal(
            new long[]
            {
                XenStoreDomainInterface.Size, XenStoreDomainInterface.Req, XenStoreDomainInterface.Rsp,
                XenStoreDomainInterface.ReqCons, XenStoreDomainInterface.ReqProd, XenStoreDomainInterface.RspCons,
                XenStoreDomainInterface.RspProd, XenStoreDomainInterface.ServerFeatures, XenStoreDomainInterface.Connection,
                XenStoreDomainInterface.Error, XsConstants.RingSize,
            },
            v);
    }

    [Fact]
    public void Sockmsg_header_and_limits_match_xs_wire_h()
    {
        var v = XenAbiLayout.Evaluate(Headers,
        [
            "sizeof(struct xsd_sockmsg)",
            "offsetof(struct xsd_sockmsg, type)",
            "offsetof(struct xsd_sockmsg, req_id)",
            "offsetof(struct xsd_sockmsg, tx_id)",
            "offsetof(struct xsd_sockmsg, len)",
            "XENSTORE_PAYLOAD_MAX",
            "XENSTORE_ABS_PATH_MAX",
            "XENSTORE_REL_PATH_MAX",
            "XENSTORE_SERVER_FEATURE_RECONNECTION",
            "XENSTORE_SERVER_FEATURE_ERROR",
            "XENSTORE_ERROR_RINGIDX",
            "XENSTORE_ERROR_PROTO",
        ]);
        Assert.Equal(new long[] { 16, 0, 4, 8, 12, XsConstants.PayloadMax, XsConstants.AbsPathMax, XsConstants.RelPathMax,
            XsConstants.ServerFeatureReconnection, XsConstants.ServerFeatureError, XsConstants.ErrorRingIdx, XsConstants.ErrorProto }, v);
    }

    [Fact]
    public void Message_type_numbers_match_xs_wire_h()
    {
        (string C, XsMessageType Ours)[] types =
        [
            ("XS_CONTROL", XsMessageType.Control), ("XS_DIRECTORY", XsMessageType.Directory), ("XS_READ", XsMessageType.Read),
            ("XS_GET_PERMS", XsMessageType.GetPerms), ("XS_WATCH", XsMessageType.Watch), ("XS_UNWATCH", XsMessageType.Unwatch),
            ("XS_TRANSACTION_START", XsMessageType.TransactionStart), ("XS_TRANSACTION_END", XsMessageType.TransactionEnd),
            ("XS_INTRODUCE", XsMessageType.Introduce), ("XS_RELEASE", XsMessageType.Release),
            ("XS_GET_DOMAIN_PATH", XsMessageType.GetDomainPath), ("XS_WRITE", XsMessageType.Write), ("XS_MKDIR", XsMessageType.Mkdir),
            ("XS_RM", XsMessageType.Rm), ("XS_SET_PERMS", XsMessageType.SetPerms), ("XS_WATCH_EVENT", XsMessageType.WatchEvent),
            ("XS_ERROR", XsMessageType.Error), ("XS_IS_DOMAIN_INTRODUCED", XsMessageType.IsDomainIntroduced),
            ("XS_RESUME", XsMessageType.Resume), ("XS_SET_TARGET", XsMessageType.SetTarget),
            ("XS_RESET_WATCHES", XsMessageType.ResetWatches), ("XS_DIRECTORY_PART", XsMessageType.DirectoryPart),
            ("XS_INVALID", XsMessageType.Invalid),
        ];
        var v = XenAbiLayout.Evaluate(Headers, types.Select(t => t.C).ToArray());
        Assert.Equal(types.Select(t => (long)t.Ours), v);
    }

    [Fact]
    public void Error_names_and_numbers_match_the_xsd_errors_table()
    {
        XsError[] ours = [XsError.EINVAL, XsError.EACCES, XsError.EEXIST, XsError.EISDIR, XsError.ENOENT, XsError.ENOMEM, XsError.ENOSPC,
            XsError.EIO, XsError.ENOTEMPTY, XsError.ENOSYS, XsError.EROFS, XsError.EBUSY, XsError.EAGAIN, XsError.EISCONN, XsError.E2BIG, XsError.EPERM];
        var v = XenAbiLayout.Evaluate(["errno.h", "xen/io/xs_wire.h"],
            ours.Select((_, i) => $"xsd_errors[{i}].errnum").Append("sizeof(xsd_errors)/sizeof(xsd_errors[0])").ToArray());
        Assert.Equal(ours.Select(e => (long)e).Append(ours.Length), v);
        foreach (var e in ours)
        {
            Assert.Equal(e.ToString() + "\0", System.Text.Encoding.ASCII.GetString(XsErrors.WireName(e)));
            Assert.Equal(e, XsErrors.FromWireName(XsErrors.WireName(e)));
        }
    }
}
