using System.Globalization;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Store;

namespace VmmKit.Backends.Xenbus;

/// <summary>
/// What a toolstack writes to XenStore to add a split device (libxl's <c>libxl__device_generic_add</c>): the backend
/// directory (owned by the backend's domain, readable by the guest) with <c>frontend</c>, <c>frontend-id</c>,
/// <c>online</c> and <c>state</c>, and the frontend directory (owned by the guest, readable by the backend) with
/// <c>backend</c>, <c>backend-id</c> and <c>state</c>, both Initialising, in one transaction.
/// </summary>
public static class XenbusToolstack
{
    /// <summary>Adds a device's two directories.</summary>
    /// <param name="store">A privileged XenStore connection (the toolstack's).</param>
    /// <param name="backendDomain">The backend's domain.</param>
    /// <param name="frontendDomain">The guest.</param>
    /// <param name="type">The device type (<c>vbd</c>, <c>console</c>).</param>
    /// <param name="deviceId">The device id.</param>
    /// <param name="backendNodes">Extra backend nodes (for a vbd: <c>params</c>, <c>mode</c>, <c>dev</c>, <c>type</c>, ...).</param>
    /// <param name="frontendNodes">Extra frontend nodes (for a vbd: <c>virtual-device</c>, <c>device-type</c>).</param>
    /// <param name="cancellationToken">Cancels the writes.</param>
    /// <returns>The backend and frontend paths.</returns>
    public static async Task<(string Backend, string Frontend)> AddDeviceAsync(XenStoreClient store, ushort backendDomain, ushort frontendDomain, string type,
        uint deviceId, IEnumerable<KeyValuePair<string, string>>? backendNodes = null, IEnumerable<KeyValuePair<string, string>>? frontendNodes = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        string be = XenbusPaths.Backend(backendDomain, type, frontendDomain, deviceId);
        string fe = XenbusPaths.Frontend(frontendDomain, type, deviceId);
        string Num(uint v) => v.ToString(CultureInfo.InvariantCulture);
        await store.TransactAsync(async tx =>
        {
            await store.MkdirAsync(be, tx, cancellationToken).ConfigureAwait(false);
            await store.SetPermissionsAsync(be, [new XsPermission(backendDomain, XsAccess.None), new XsPermission(frontendDomain, XsAccess.Read)], tx, cancellationToken).ConfigureAwait(false);
            await store.MkdirAsync(fe, tx, cancellationToken).ConfigureAwait(false);
            await store.SetPermissionsAsync(fe, [new XsPermission(frontendDomain, XsAccess.None), new XsPermission(backendDomain, XsAccess.Read)], tx, cancellationToken).ConfigureAwait(false);
            await store.WriteAsync($"{be}/frontend", fe, tx, cancellationToken).ConfigureAwait(false);
            await store.WriteAsync($"{be}/frontend-id", Num(frontendDomain), tx, cancellationToken).ConfigureAwait(false);
            await store.WriteAsync($"{be}/online", "1", tx, cancellationToken).ConfigureAwait(false);
            await store.WriteAsync($"{be}/state", Num((uint)XenbusState.Initialising), tx, cancellationToken).ConfigureAwait(false);
            foreach (var (k, v) in backendNodes ?? [])
                await store.WriteAsync($"{be}/{k}", v, tx, cancellationToken).ConfigureAwait(false);
            await store.WriteAsync($"{fe}/backend", be, tx, cancellationToken).ConfigureAwait(false);
            await store.WriteAsync($"{fe}/backend-id", Num(backendDomain), tx, cancellationToken).ConfigureAwait(false);
            await store.WriteAsync($"{fe}/state", Num((uint)XenbusState.Initialising), tx, cancellationToken).ConfigureAwait(false);
            foreach (var (k, v) in frontendNodes ?? [])
                await store.WriteAsync($"{fe}/{k}", v, tx, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken: cancellationToken).ConfigureAwait(false);
        return (be, fe);
    }
}
