using System.Globalization;
using VmmKit.Boot;
using VmmKit.Dom0.Xen;
using VmmKit.Hypercall;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Client;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// The toolstack (libxl's part, with libxc's PVH domain builder): builds a domain from an <see cref="XlConfig"/> through
/// XenControl and foreign mappings only, writes its XenStore tree the way libxl does, connects its console, and
/// applies on_poweroff/on_crash when VIRQ_DOM_EXC says a domain stopped.
/// </summary>
internal sealed class Toolstack(XenControl xc, XenStoreClient store, IConsoleBackend console, StoreRings storeRings, BlockBackends disks, Action saveState)
{
    /// <summary>
    /// Pages at the top of RAM the builder reserves in the e820 map: the ACPI tables (libxl's for a PVH domain), then the
    /// console and XenStore rings (libxc's special pages).
    /// </summary>
    private const int SpecialPages = 3;

    /// <summary><c>offsetof(struct hvm_start_info, rsdp_paddr)</c> (xen/include/public/arch-x86/hvm/start_info.h).</summary>
    private const int StartInfoRsdpOffset = 32;

    /// <summary>The largest xl.cfg kept in XenStore for a Dom0 that restarts (XENSTORE_PAYLOAD_MAX is 4096 with the path).</summary>
    private const int MaxStoredConfig = 3072;

    private readonly object _lock = new();

    /// <summary>The config each running domain was built from: what on_*="restart" builds again (xl keeps it as the domain's userdata).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<ushort, XlConfig> _configs = new();

    /// <summary>Builds and starts the domain; returns its domid.</summary>
    public async Task<ushort> CreateAsync(XlConfig cfg)
    {
        byte[] kernel = await File.ReadAllBytesAsync(cfg.Kernel);
        if (!ElfImage.TryParse(kernel, out var image, out string error))
            throw new InvalidOperationException($"{cfg.Kernel}: {error}");
        // xc_dom_parse_elf_kernel: a kernel requiring XENFEAT_dom0 is never built as a guest.
        if (image!.RequiresDom0)
            throw new InvalidOperationException($"{cfg.Kernel}: Kernel does not support unprivileged (DomU) operation");
        var modules = new List<PvhModule>();
        if (cfg.Ramdisk is { } rd)
            modules.Add(new PvhModule(await File.ReadAllBytesAsync(rd), Path.GetFileName(rd)));
        if ((await FindByNameAsync(cfg.Name)).HasValue)
            throw new InvalidOperationException($"a domain named {cfg.Name} exists");

        var uuid = Guid.NewGuid();
        ulong pages = cfg.MemoryMiB << 8;
        ushort domid;
        long[] frames = new long[pages];
        lock (_lock)
        {
            domid = xc.CreateDomain(uuid, cfg.Vcpus);
            try
            {
                xc.SetMaxMemory(domid, cfg.MemoryMiB << 10);
                var gfns = new ulong[pages];
                for (ulong i = 0; i < pages; i++)
                    gfns[i] = i;
                xc.PopulatePhysmap(domid, gfns);
                for (int start = 0; start < gfns.Length; start += HypervisorChannel.MaxBatch)
                {
                    int n = Math.Min(HypervisorChannel.MaxBatch, gfns.Length - start);
                    xc.Privcmd.MmapBatch(domid, gfns.AsSpan(start, n), frames.AsSpan(start, n));
                }

                if (frames.Any(f => f < 0))
                    throw new XenException(XenErrno.EFAULT, "mmapbatch of the new domain's RAM");

                ulong usable = (pages - SpecialPages) << 12;
                HvmMemmapTableEntry[] map =
                [
                    new() { Addr = 0, Size = usable, Type = (uint)HvmMemmapType.Ram },
                    new() { Addr = usable, Size = SpecialPages * 4096, Type = (uint)HvmMemmapType.Reserved },
                ];
                var writer = new ForeignMemoryWriter(xc.Privcmd.Channel, frames);
                if (!PvhLoader.TryLoad(image!, kernel, cfg.Cmdline, modules, usable, map, writer, out var boot, out error))
                    throw new InvalidOperationException($"cannot load {cfg.Kernel}: {error}");

                // libxl's ACPI tables for a PVH domain (RSDP, XSDT, hardware-reduced FADT, DSDT, a MADT with one local
                // APIC per vCPU) in the first special page; hvm_start_info.rsdp_paddr points at the RSDP. Without the
                // MADT Linux stays in PIC mode and never sets up its Xen clock event device.
                ulong acpiPfn = pages - 3;
                ulong rsdp = VmmKit.ReferenceHypervisor.Cpu.AcpiTables.Build(xc.Privcmd.Channel.Frame((ulong)frames[acpiPfn]), acpiPfn << 12, (int)cfg.Vcpus);
                if (!writer.TryWrite(boot.StartInfoAddress + StartInfoRsdpOffset, BitConverter.GetBytes(rsdp)))
                    throw new XenException(XenErrno.EFAULT, "writing hvm_start_info.rsdp_paddr");

                ulong consolePfn = pages - 2, storePfn = pages - 1;
                uint consolePort = xc.AllocUnbound(domid, 0);
                uint storePort = xc.AllocUnbound(domid, 0);
                xc.SetHvmParam(domid, HvmParam.ConsolePfn, consolePfn);
                xc.SetHvmParam(domid, HvmParam.ConsoleEvtchn, consolePort);
                xc.SetHvmParam(domid, HvmParam.StorePfn, storePfn);
                xc.SetHvmParam(domid, HvmParam.StoreEvtchn, storePort);
                xc.SetBootVcpu(domid, boot.Entry, boot.StartInfoAddress);
                SeedGrants(domid, pages, consolePfn, storePfn);
                WriteTreeAsync(domid, uuid, cfg, consolePort, consolePfn, storePort, storePfn).GetAwaiter().GetResult();
                uint local = console.Connect(domid, consolePort);
                store.WriteAsync($"/libxl/{domid}/console-local-port", local.ToString(CultureInfo.InvariantCulture)).GetAwaiter().GetResult();
                // XS_INTRODUCE (libxl's xs_introduce_domain): xenstored maps the store ring and binds its port.
                store.IntroduceAsync(domid, (long)storePfn, storePort).GetAwaiter().GetResult();
                if (storeRings.LocalPort(domid) is not { } storeLocal)
                    throw new XenException(XenErrno.EFAULT, "xenstored could not map the store ring");
                store.WriteAsync($"/libxl/{domid}/store-local-port", storeLocal.ToString(CultureInfo.InvariantCulture)).GetAwaiter().GetResult();
                store.WriteAsync($"/libxl/{domid}/store-gfn", storePfn.ToString(CultureInfo.InvariantCulture)).GetAwaiter().GetResult();
                // disk=[...]: the vbd trees and a block backend offering each disk (InitWait) before the guest runs.
                foreach (var disk in cfg.Disks)
                    disks.AddAsync(store, domid, disk).GetAwaiter().GetResult();
                // The builder's mappings go: the backends reach the rings through their own grant and foreign maps.
                xc.Privcmd.Unmap([.. frames.Select(f => (ulong)f)]);
                _configs[domid] = cfg;
                saveState();
                xc.Unpause(domid);
            }
            catch
            {
                Cleanup(domid);
                throw;
            }
        }

        return domid;
    }

    /// <summary>
    /// libxc's <c>xc_dom_gnttab_hvm_seed</c>: grant-table frame 0 of the new domain placed at a scratch gfn just above
    /// its RAM, foreign-mapped, and entries <c>GNTTAB_RESERVED_CONSOLE</c> and <c>GNTTAB_RESERVED_XENSTORE</c> written to
    /// give domain 0 the console and store rings (xen/grant_table.h, v1 entries: frame and domid before the flags).
    /// </summary>
    private void SeedGrants(ushort domid, ulong ramPages, ulong consolePfn, ulong storePfn)
    {
        ulong scratch = ramPages;
        xc.AddToPhysmap(domid, XenMapSpace.GrantTable, 0, scratch);
        var mfn = new long[1];
        xc.Privcmd.MmapBatch(domid, [scratch], mfn);
        if (mfn[0] < 0)
            throw new XenException((XenErrno)(-mfn[0]), "mapping the new domain's grant table");
        try
        {
            var entries = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, VmmKit.GrantTable.GrantEntryV1>(xc.Privcmd.Channel.Frame((ulong)mfn[0]));
            entries[(int)VmmKit.Backends.Console.ConsoleBackend.ReservedConsoleGrant] = new() { Frame = checked((uint)consolePfn), DomId = 0 };
            entries[(int)VmmKit.Backends.Console.ConsoleBackend.ReservedXenStoreGrant] = new() { Frame = checked((uint)storePfn), DomId = 0 };
            Interlocked.MemoryBarrier();   // wmb(): the frame and domid before the flags
            entries[(int)VmmKit.Backends.Console.ConsoleBackend.ReservedConsoleGrant].Flags = (ushort)VmmKit.GrantTable.GrantEntryFlags.PermitAccess;
            entries[(int)VmmKit.Backends.Console.ConsoleBackend.ReservedXenStoreGrant].Flags = (ushort)VmmKit.GrantTable.GrantEntryFlags.PermitAccess;
        }
        finally
        {
            xc.Privcmd.Unmap([(ulong)mfn[0]]);
        }
    }

    private void Cleanup(ushort domid)
    {
        try
        {
            console.Disconnect(domid);
            disks.Remove(domid);
            storeRings.Release(domid);
            xc.DestroyDomain(domid);
        }
        catch (XenException)
        {
        }
    }

    /// <summary>
    /// The tree libxl writes for a domain (tools/libs/light/libxl_create.c, libxl_dom.c): /local/domain/N/{name, domid,
    /// vm, memory/target, memory/static-max, store/port, store/ring-ref, console/{port, ring-ref, type, limit},
    /// cpu/0/availability, and the domain's own device/, control/, data/, drivers/, feature/, attr/, error/}, /vm/UUID/{name, uuid}, and the toolstack's own notes under /libxl/N.
    /// </summary>
    private async Task WriteTreeAsync(ushort domid, Guid uuid, XlConfig cfg, uint consolePort, ulong consoleGfn, uint storePort, ulong storeGfn)
    {
        string d = $"/local/domain/{domid}";
        string I(ulong v) => v.ToString(CultureInfo.InvariantCulture);
        var tx = await store.StartTransactionAsync();
        // The home is Dom0's and readable by the domain; the directories under it are the domain's (libxl_create.c).
        await store.MkdirAsync(d, tx);
        await store.SetPermissionsAsync(d, [new XsPermission(0, XsAccess.None), new XsPermission(domid, XsAccess.Read)], tx);
        foreach (string dir in (string[])["device", "control", "data", "drivers", "feature", "attr", "error"])
        {
            await store.MkdirAsync($"{d}/{dir}", tx);
            await store.SetPermissionsAsync($"{d}/{dir}", [new XsPermission(domid, XsAccess.None)], tx);
        }

        await store.WriteAsync($"{d}/name", cfg.Name, tx);
        await store.WriteAsync($"{d}/domid", I(domid), tx);
        await store.WriteAsync($"{d}/vm", $"/vm/{uuid}", tx);
        await store.WriteAsync($"{d}/memory/static-max", I(cfg.MemoryMiB << 10), tx);
        await store.WriteAsync($"{d}/memory/target", I(cfg.MemoryMiB << 10), tx);
        await store.WriteAsync($"{d}/store/port", I(storePort), tx);
        await store.WriteAsync($"{d}/store/ring-ref", I(storeGfn), tx);
        await store.WriteAsync($"{d}/console/port", I(consolePort), tx);
        await store.WriteAsync($"{d}/console/ring-ref", I(consoleGfn), tx);
        await store.WriteAsync($"{d}/console/type", "xenconsoled", tx);
        await store.WriteAsync($"{d}/console/limit", "1048576", tx);
        for (uint cpu = 0; cpu < cfg.Vcpus; cpu++)
            await store.WriteAsync($"{d}/cpu/{cpu}/availability", "online", tx);
        await store.WriteAsync($"/vm/{uuid}/name", cfg.Name, tx);
        await store.WriteAsync($"/vm/{uuid}/uuid", uuid.ToString(), tx);
        await store.SetPermissionsAsync($"/vm/{uuid}", [new XsPermission(0, XsAccess.None), new XsPermission(domid, XsAccess.Read)], tx);
        await store.WriteAsync($"/libxl/{domid}/on_poweroff", cfg.OnPoweroff, tx);
        await store.WriteAsync($"/libxl/{domid}/on_crash", cfg.OnCrash, tx);
        await store.WriteAsync($"/libxl/{domid}/on_reboot", cfg.OnReboot, tx);
        if (cfg.Text.Length <= MaxStoredConfig)
        {
            await store.WriteAsync($"/libxl/{domid}/xl-config", cfg.Text, tx);
            await store.WriteAsync($"/libxl/{domid}/xl-config-dir", cfg.Directory, tx);
        }
        await store.EndTransactionAsync(tx, commit: true);
    }

    /// <summary>
    /// A new Dom0 after the previous one died: for every running domain, the console is connected again (the old
    /// process's grant map and port went with it: the guest's port is bound afresh); the tree is xenstored's
    /// restored state, and xenstored serves the store rings again.
    /// </summary>
    public async Task ReattachAsync(VmmKit.XenStore.Daemon.XenStoreDaemon xenstored)
    {
        foreach (var d in xc.ListDomains())
        {
            if (d.Domid == 0)
                continue;
            if (await store.TryReadStringAsync($"/libxl/{d.Domid}/xl-config") is { } text
                && await store.TryReadStringAsync($"/libxl/{d.Domid}/xl-config-dir") is { } dir
                && XlConfig.Parse(text, dir, out _) is { } cfg)
                _configs[d.Domid] = cfg;
            if (await store.TryReadStringAsync($"/libxl/{d.Domid}/console-local-port") is { } port
                && await store.TryReadStringAsync($"/local/domain/{d.Domid}/console/port") is { } remote)
            {
                // The guest owns its grant table: its GNTTAB_RESERVED_CONSOLE entry may be ended or changed by now. As
                // xenconsoled's domain_create_ring, that console stays unconnected and the other domains are reattached.
                try
                {
                    uint local = console.Reconnect(d.Domid, uint.Parse(port, CultureInfo.InvariantCulture), uint.Parse(remote, CultureInfo.InvariantCulture));
                    await store.WriteAsync($"/libxl/{d.Domid}/console-local-port", local.ToString(CultureInfo.InvariantCulture));
                }
                catch (Exception e) when (e is XenException or VmmKit.EventChannel.EventChannelException)
                {
                    Console.Error.WriteLine($"vmmkit-dom0: domain {d.Domid}: cannot connect its console again ({e.Message}); it stays unconnected");
                }
            }

            if (await store.TryReadStringAsync($"/local/domain/{d.Domid}/store/port") is { } sp
                && await store.TryReadStringAsync($"/libxl/{d.Domid}/store-gfn") is { } sg
                && storeRings.Reintroduce(xenstored, d.Domid, ulong.Parse(sg, CultureInfo.InvariantCulture), uint.Parse(sp, CultureInfo.InvariantCulture)) is { } storeLocal)
                await store.WriteAsync($"/libxl/{d.Domid}/store-local-port", storeLocal.ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>
    /// The domain's name from XenStore (Domain-0 for 0); "(null)" for one without (a zombie, whose entries went when it
    /// was destroyed), as xl prints libxl_domid_to_name's NULL.
    /// </summary>
    public async Task<string> NameOfAsync(ushort domid) =>
        domid == 0 ? "Domain-0" : await store.TryReadStringAsync($"/local/domain/{domid}/name") ?? "(null)";

    /// <summary>A domain by name or number.</summary>
    public async Task<ushort?> ResolveAsync(string nameOrId)
    {
        if (ushort.TryParse(nameOrId, NumberStyles.None, CultureInfo.InvariantCulture, out ushort id))
            return xc.GetDomainInfo(id) is null ? null : id;
        return await FindByNameAsync(nameOrId);
    }

    private async Task<ushort?> FindByNameAsync(string name)
    {
        if (name == "Domain-0")
            return 0;
        foreach (var d in xc.ListDomains())
        {
            if (d.Domid != 0 && await NameOfAsync(d.Domid) == name)
                return d.Domid;
        }

        return null;
    }

    /// <summary>Destroys a domain and removes its XenStore tree (libxl_domain_destroy).</summary>
    public async Task DestroyAsync(ushort domid)
    {
        if (domid == 0)
            throw new InvalidOperationException("Domain-0 cannot be destroyed");
        string? vm = await store.TryReadStringAsync($"/local/domain/{domid}/vm");
        try
        {
            await store.ReleaseAsync(domid);   // XS_RELEASE, as libxl_domain_destroy
        }
        catch (XenStoreException)
        {
            // Never introduced (its build failed): nothing to release.
        }

        lock (_lock)
        {
            console.Disconnect(domid);
            disks.Remove(domid);
            storeRings.Release(domid);
            xc.DestroyDomain(domid);
        }

        _configs.TryRemove(domid, out _);

        await store.RemoveAsync($"/local/domain/{domid}");
        await store.RemoveAsync($"/libxl/{domid}");
        if (vm is not null)
            await store.RemoveAsync(vm);
        saveState();
    }

    /// <summary>
    /// <c>xl shutdown</c> / <c>xl reboot</c> (libxl_domain_shutdown, libxl_domain_reboot): a guest with PV control (it
    /// wrote <c>control/feature-poweroff</c> or <c>control/feature-reboot</c>, as Linux's xenbus does) is asked through
    /// <c>control/shutdown</c> and stops itself; one without is stopped by SCHEDOP_remote_shutdown with the reason, as
    /// <c>xl reboot -F</c>/<c>xl shutdown -F</c> fall back to.
    /// </summary>
    public async Task RequestShutdownAsync(ushort domid, ShutdownReason reason)
    {
        if (domid == 0)
            throw new InvalidOperationException("Domain-0 is not shut down by the toolstack");
        string request = reason == ShutdownReason.Reboot ? "reboot" : "poweroff";
        string c = $"/local/domain/{domid}/control";
        if (await store.TryReadStringAsync($"{c}/feature-{request}") == "1")
            await store.WriteAsync($"{c}/shutdown", request);
        else
            xc.Shutdown(domid, reason);
    }

    /// <summary>
    /// VIRQ_DOM_EXC: each domain that shut down gets the action its config gives for the reason (xl.cfg(5) on_poweroff,
    /// on_reboot, on_crash; xl_vmcontrol.c's handle_domain_death): destroy, restart (destroy, then build the same config
    /// again under the same name) or preserve (left shut down for <c>xl list</c> and <c>xl destroy</c>). Each is reported
    /// on Dom0's log with xl's wording.
    /// </summary>
    public async Task OnDomainExceptionAsync()
    {
        foreach (var d in xc.ListDomains())
        {
            if (d.Domid == 0 || !d.Shutdown || d.Dying)
                continue;
            string key = d.ShutdownReason switch { 1 => "on_reboot", 3 => "on_crash", _ => "on_poweroff" };
            string action = await store.TryReadStringAsync($"/libxl/{d.Domid}/{key}") ?? "destroy";
            if (await store.TryReadStringAsync($"/libxl/{d.Domid}/handled") is not null)
                continue;   // preserved earlier: reported once
            Console.Error.WriteLine($"vmmkit-dom0: Domain {d.Domid} has shut down, reason code {d.ShutdownReason} 0x{d.ShutdownReason:x}");
            Console.Error.WriteLine($"vmmkit-dom0: Action for shutdown reason code {d.ShutdownReason} is {action}");
            switch (action)
            {
                case "preserve":
                    await store.WriteAsync($"/libxl/{d.Domid}/handled", key);
                    break;
                case "restart" when _configs.TryGetValue(d.Domid, out var cfg):
                    await DestroyAsync(d.Domid);
                    try
                    {
                        ushort domid = await CreateAsync(cfg);
                        Console.Error.WriteLine($"vmmkit-dom0: Domain {d.Domid} restarted as {cfg.Name} (id={domid})");
                    }
                    catch (Exception e) when (e is InvalidOperationException or XenException or IOException or XenStoreException)
                    {
                        Console.Error.WriteLine($"vmmkit-dom0: restarting {cfg.Name} failed: {e.Message}");
                    }

                    break;
                default:
                    await DestroyAsync(d.Domid);
                    break;
            }
        }
    }
}
