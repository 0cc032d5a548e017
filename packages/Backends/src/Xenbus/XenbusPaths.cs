namespace VmmKit.Backends.Xenbus;

/// <summary>Where xenbus devices live in XenStore (xen/io/xenbus.h, libxl's device paths).</summary>
public static class XenbusPaths
{
    /// <summary><c>/local/domain/&lt;domid&gt;</c>: a domain's home.</summary>
    /// <param name="domainId">The domain.</param>
    /// <returns>The path.</returns>
    public static string Domain(uint domainId) => $"/local/domain/{domainId}";

    /// <summary>The frontend directory: <c>/local/domain/&lt;frontend&gt;/device/&lt;type&gt;/&lt;devid&gt;</c>.</summary>
    /// <param name="frontendDomain">The guest.</param>
    /// <param name="type">The device type (<c>vbd</c>, <c>console</c>).</param>
    /// <param name="deviceId">The device id.</param>
    /// <returns>The path.</returns>
    public static string Frontend(uint frontendDomain, string type, uint deviceId) => $"{Domain(frontendDomain)}/device/{type}/{deviceId}";

    /// <summary>The backend directory: <c>/local/domain/&lt;backend&gt;/backend/&lt;type&gt;/&lt;frontend&gt;/&lt;devid&gt;</c>.</summary>
    /// <param name="backendDomain">The backend's domain (0 for Dom0).</param>
    /// <param name="type">The device type.</param>
    /// <param name="frontendDomain">The guest.</param>
    /// <param name="deviceId">The device id.</param>
    /// <returns>The path.</returns>
    public static string Backend(uint backendDomain, string type, uint frontendDomain, uint deviceId) =>
        $"{Domain(backendDomain)}/backend/{type}/{frontendDomain}/{deviceId}";

    /// <summary>
    /// The xenbus device id of a Xen virtual disk name (docs/man/xen-vbd-interface.7): <c>xvd[a-o]</c> is
    /// <c>(202 &lt;&lt; 8) | (disk &lt;&lt; 4) | partition</c>, so <c>xvda</c> is 51712; later disks use the extended form.
    /// </summary>
    /// <param name="vdev">A name like <c>xvda</c>.</param>
    /// <param name="deviceId">The id.</param>
    /// <returns>False for a name this does not parse.</returns>
    public static bool TryParseVirtualDisk(string vdev, out uint deviceId)
    {
        deviceId = 0;
        if (vdev is null || !vdev.StartsWith("xvd", StringComparison.Ordinal) || vdev.Length < 4)
            return false;
        int disk = 0, i = 3;
        while (i < vdev.Length && vdev[i] is >= 'a' and <= 'z')
            disk = (disk * 26) + (vdev[i++] - 'a' + 1);
        disk--;
        if (disk < 0 || i != vdev.Length)
            return false;
        deviceId = disk < 16 ? (202u << 8) | ((uint)disk << 4) : (1u << 28) | ((uint)disk << 8);
        return true;
    }
}
