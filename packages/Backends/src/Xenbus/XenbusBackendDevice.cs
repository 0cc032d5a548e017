using System.Globalization;
using System.Runtime.CompilerServices;
using VmmKit.XenStore.Client;

namespace VmmKit.Backends.Xenbus;

/// <summary>
/// A backend's view of one split device in XenStore (xen/io/xenbus.h): its own directory (written by the toolstack, then
/// by the backend: features, <c>state</c>) and the frontend's (read: ring references, event channel, <c>state</c>).
/// Values the frontend wrote are untrusted; the parsers here return false rather than throw on bad text.
/// </summary>
public sealed class XenbusBackendDevice
{
    /// <summary>Creates the view.</summary>
    /// <param name="store">A XenStore connection of the backend's domain.</param>
    /// <param name="backendPath">The backend directory.</param>
    /// <param name="frontendPath">The frontend directory (the toolstack's <c>frontend</c> node).</param>
    /// <param name="frontendDomain">The frontend's domain (the toolstack's <c>frontend-id</c> node).</param>
    public XenbusBackendDevice(XenStoreClient store, string backendPath, string frontendPath, ushort frontendDomain)
    {
        ArgumentNullException.ThrowIfNull(store);
        Store = store;
        BackendPath = backendPath;
        FrontendPath = frontendPath;
        FrontendDomain = frontendDomain;
    }

    /// <summary>The XenStore connection.</summary>
    public XenStoreClient Store { get; }

    /// <summary>The backend directory.</summary>
    public string BackendPath { get; }

    /// <summary>The frontend directory.</summary>
    public string FrontendPath { get; }

    /// <summary>The frontend's domain.</summary>
    public ushort FrontendDomain { get; }

    /// <summary>Writes a node of the backend directory.</summary>
    /// <param name="key">The node name.</param>
    /// <param name="value">Its value.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>The write.</returns>
    public Task WriteAsync(string key, string value, CancellationToken cancellationToken = default) =>
        Store.WriteAsync($"{BackendPath}/{key}", value, cancellationToken: cancellationToken);

    /// <summary><c>xenbus_switch_state</c>: writes the backend's <c>state</c>.</summary>
    /// <param name="state">The new state.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>The write.</returns>
    public Task SwitchStateAsync(XenbusState state, CancellationToken cancellationToken = default) =>
        WriteAsync("state", ((int)state).ToString(CultureInfo.InvariantCulture), cancellationToken);

    /// <summary>Reads a frontend node, or null when it is missing or unreadable.</summary>
    /// <param name="key">The node name.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The value.</returns>
    public async Task<string?> ReadFrontendAsync(string key, CancellationToken cancellationToken = default)
    {
        try
        {
            return await Store.TryReadStringAsync($"{FrontendPath}/{key}", cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (XenStoreException)
        {
            return null; // EACCES and friends: the frontend's directory is not ours to trust
        }
    }

    /// <summary>Reads an unsigned frontend node (decimal); false when missing or malformed.</summary>
    /// <param name="key">The node name.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The value, or null.</returns>
    public async Task<uint?> ReadFrontendUIntAsync(string key, CancellationToken cancellationToken = default) =>
        uint.TryParse(await ReadFrontendAsync(key, cancellationToken).ConfigureAwait(false), NumberStyles.None, CultureInfo.InvariantCulture, out uint v) ? v : null;

    /// <summary>The frontend's <c>state</c> (<see cref="XenbusState.Unknown"/> when missing or malformed).</summary>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The state.</returns>
    public async Task<XenbusState> ReadFrontendStateAsync(CancellationToken cancellationToken = default) =>
        await ReadFrontendUIntAsync("state", cancellationToken).ConfigureAwait(false) is { } v && v <= (uint)XenbusState.Reconfigured
            ? (XenbusState)v : XenbusState.Unknown;

    /// <summary>The frontend's state each time its <c>state</c> node may have changed (a XenStore watch), starting with the current one.</summary>
    /// <param name="cancellationToken">Ends the stream.</param>
    /// <returns>The states.</returns>
    public async IAsyncEnumerable<XenbusState> WatchFrontendStateAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var _ in Store.WatchAsync($"{FrontendPath}/state", cancellationToken: cancellationToken).ConfigureAwait(false))
            yield return await ReadFrontendStateAsync(cancellationToken).ConfigureAwait(false);
    }
}
