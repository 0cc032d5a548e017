using System.Globalization;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Store;

namespace VmmKit.ReferenceHypervisor.Pv;

/// <summary>
/// The XenStore nodes a toolstack writes for a new domain (libxl's <c>libxl__domain_make</c> and
/// <c>libxl__build_post</c>): <c>/local/domain/N</c> owned by Dom0 and readable by the guest, with <c>name</c>,
/// <c>domid</c>, <c>memory</c>, the rings of <c>console</c> and <c>store</c>, and the directories the guest owns
/// (<c>device</c>, <c>control</c>, <c>data</c>, <c>drivers</c>, <c>feature</c>, <c>attr</c>, <c>error</c>).
/// </summary>
internal static class DomainStoreTree
{
    public static async Task WriteAsync(XenStoreClient xs, Domain d, ulong consolePfn, uint consolePort, ulong storePfn, uint storePort)
    {
        string N(ulong v) => v.ToString(CultureInfo.InvariantCulture);
        string home = $"/local/domain/{d.Id}";
        ulong kib = d.MemoryBytes >> 10;
        await xs.TransactAsync(async tx =>
        {
            await xs.MkdirAsync(home, tx).ConfigureAwait(false);
            await xs.SetPermissionsAsync(home, [new XsPermission(0, XsAccess.None), new XsPermission(d.Id, XsAccess.Read)], tx).ConfigureAwait(false);
            foreach (string dir in (string[])["device", "control", "data", "drivers", "feature", "attr", "error"])
            {
                await xs.MkdirAsync($"{home}/{dir}", tx).ConfigureAwait(false);
                await xs.SetPermissionsAsync($"{home}/{dir}", [new XsPermission(d.Id, XsAccess.None)], tx).ConfigureAwait(false);
            }

            await xs.WriteAsync($"{home}/name", d.Name, tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/domid", N(d.Id), tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/memory/static-max", N(kib), tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/memory/target", N(kib), tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/cpu/0/availability", "online", tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/console/ring-ref", N(consolePfn), tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/console/port", N(consolePort), tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/console/type", "xenconsoled", tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/console/limit", "1048576", tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/store/ring-ref", N(storePfn), tx).ConfigureAwait(false);
            await xs.WriteAsync($"{home}/store/port", N(storePort), tx).ConfigureAwait(false);
            return true;
        }).ConfigureAwait(false);
    }
}
