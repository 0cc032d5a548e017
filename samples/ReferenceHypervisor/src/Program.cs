using System.CommandLine;
using VmmKit.ReferenceHypervisor;
using VmmKit.Boot;
using VmmKit.ReferenceHypervisor.Cli;
using VmmKit.ReferenceHypervisor.Demo;

// vmmkit-hv: boots a Xen PVH kernel on the emulated processor; with no arguments, the built-in demo guest.
var memory = new Option<ulong>("--memory", "-m")
{
    Description = "Guest RAM in MiB",
    DefaultValueFactory = _ => 64,
    Recursive = true,
};
var cmdline = new Option<string>("--cmdline")
{
    Description = "Kernel command line (hvm_start_info.cmdline_paddr)",
    DefaultValueFactory = _ => "",
    Recursive = true,
};
var maxInstructions = new Option<ulong>("--max-instructions")
{
    Description = "Crash the domain after this many guest instructions, each operation of a batched hypercall counted as one (0 = no limit)",
    Recursive = true,
};
var trace = new Option<bool>("--trace")
{
    Description = "Print every VM exit to stderr",
    Recursive = true,
};
var stats = new Option<bool>("--stats")
{
    Description = "Print guest instructions retired, VM exits and run time to stderr at the end",
    Recursive = true,
};
var tier = new Option<string>("--tier")
{
    Description = "How guest code runs: interpreter (default; or VMMKIT_EMULATOR_TIER), translator (hot blocks translated to " +
        "host x86-64 code), lockstep (each translated block checked against the interpreter; mismatches reported on stderr at the end; " +
        "its undo and replay of stores assumes one vCPU runs at a time, so not with --scheduler threaded and several vCPUs)",
    Recursive = true,
};
tier.AcceptOnlyFromAmong(ProcessorProviders.TierNames);
var scheduler = new Option<string>("--scheduler")
{
    Description = "How vCPUs are scheduled: round-robin (every vCPU on one thread, deterministic), threaded (each vCPU on a " +
        "host thread of its own). Default: VMMKIT_SCHEDULER, else threaded once a guest has several vCPUs (round-robin " +
        "while every guest has one vCPU, or in the lockstep tier)",
    Recursive = true,
};
scheduler.AcceptOnlyFromAmong(Machine.SchedulerNames);
var modules = new Option<FileInfo[]>("--module")
{
    Description = "A boot module (initrd) passed in hvm_start_info's module list; repeat for several",
};
var noXenStore = new Option<bool>("--no-xenstore")
{
    Description = "Build the domain without XenStore (HVM_PARAM_STORE_PFN = 0, as a dom0less domain): Linux skips xenbus",
};
var disks = new Option<FileInfo[]>("--disk")
{
    Description = "A raw disk image for the guest's PV block device (xvda, then xvdb, ...; served by the in-process blkback); repeat for several",
};
var vcpus = new Option<int>("--vcpus")
{
    Description = "Number of vCPUs (1-128): vCPU 0 boots, the others wait for INIT/SIPI (or VCPUOP_initialise and VCPUOP_up); the MADT lists them all",
    DefaultValueFactory = _ => 1,
};
var kernel = new Argument<FileInfo>("kernel") { Description = "A PVH kernel: ELF32 or ELF64 with XEN_ELFNOTE_PHYS32_ENTRY" };
var demoPath = new Argument<FileInfo>("path") { Description = "Where to write the demo guest's ELF file" };

var boot = new Command("boot", "Boot a PVH kernel") { kernel, modules, noXenStore, disks, vcpus };
boot.SetAction(r =>
{
    var file = r.GetValue(kernel)!;
    byte[] image;
    var mods = new List<PvhModule>();
    try
    {
        image = File.ReadAllBytes(file.FullName);
        foreach (var m in r.GetValue(modules) ?? [])
            mods.Add(new PvhModule(File.ReadAllBytes(m.FullName), m.Name));
    }
    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
    {
        Console.Error.WriteLine($"vmmkit-hv: {e.Message}");
        return ExitCodes.StartFailure;
    }

    return Runner.Boot(file.Name, image, mods, r.GetValue(memory), r.GetValue(cmdline) ?? "", r.GetValue(maxInstructions), r.GetValue(trace), r.GetValue(stats),
        [.. (r.GetValue(disks) ?? []).Select(f => f.FullName)], !r.GetValue(noXenStore), r.GetValue(vcpus));
});

var writeDemo = new Command("write-demo", "Write the built-in demo guest as a PVH ELF file (it also boots under QEMU)") { demoPath };
writeDemo.SetAction(r =>
{
    File.WriteAllBytes(r.GetValue(demoPath)!.FullName, DemoGuest.Build());
    return 0;
});

var rundir = new Option<DirectoryInfo>("--rundir") { Description = "Directory for the Dom0 channel's socket (hypervisor.sock)", Required = true };
var hostMemory = new Option<ulong>("--memory", "-m") { Description = "Machine memory in MiB", DefaultValueFactory = _ => 512 };
var dom0Memory = new Option<ulong>("--dom0-memory") { Description = "Domain 0's memory in MiB", DefaultValueFactory = _ => 16 };
var dom0Program = new Option<FileInfo?>("--dom0") { Description = "Start this Dom0 program (vmmkit-dom0) with --rundir DIR" };
var host = new Command("host", "Run the hypervisor with no guest: domain 0 is created and the Dom0 channel (docs/dom0-abi.md) listens " +
    "on DIR/hypervisor.sock; with --dom0 the Dom0 process is started too. Runs until SIGTERM or SIGINT.")
{
    rundir, hostMemory, dom0Memory, dom0Program,
};
host.SetAction(r => VmmKit.ReferenceHypervisor.Host.HostRunner.Run(r.GetValue(rundir)!.FullName, r.GetValue(hostMemory),
    r.GetValue(dom0Memory), r.GetValue(dom0Program)?.FullName));

var root = new RootCommand("vmmkit-hv: the VmmKit reference hypervisor. Boots Xen PVH guests on the emulated processor; " +
    "with no command it boots a built-in demo guest. Guest console output goes to stdout, hypervisor messages to stderr. " +
    ExitCodes.HelpText)
{
    memory, cmdline, maxInstructions, trace, stats, tier, scheduler, boot, writeDemo, host,
};
root.SetAction(r => Runner.Boot("demo", DemoGuest.Build(), [], r.GetValue(memory), r.GetValue(cmdline) ?? "", r.GetValue(maxInstructions), r.GetValue(trace), r.GetValue(stats)));

var parsed = root.Parse(args);
if (parsed.Errors.Count == 0 && parsed.GetValue(tier) is string tierName && ProcessorProviders.TryParseTier(tierName, out var executionTier))
    ProcessorProviders.Tier = executionTier;
if (parsed.Errors.Count == 0 && parsed.GetValue(scheduler) is string schedulerName && Machine.TryParseScheduler(schedulerName, out var schedulerMode))
    Machine.DefaultScheduling = schedulerMode;
return parsed.Invoke();
