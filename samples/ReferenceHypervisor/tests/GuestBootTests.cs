using System.Diagnostics;
using System.Text;
using VmmKit.Hypercall;
using VmmKit.Boot;
using VmmKit.ReferenceHypervisor.Cli;
using VmmKit.ReferenceHypervisor.Demo;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>Boots the demo guest and every gcc-built C guest on the emulated processor and checks transcripts and outcomes.</summary>
public class GuestBootTests
{
    private const ulong GuestMemory = 16 << 20;

    private static Machine NewMachine(List<string>? log = null) =>
        new(64 << 20, ProcessorProviders.CreateDefault()) { Logger = m => log?.Add(m), MaxInstructionsPerVcpu = 500_000_000 };

    private static Domain Boot(Machine machine, string guest, string cmdline = "", IReadOnlyList<PvhModule>? modules = null)
    {
        byte[] kernel = guest == "demo" ? DemoGuest.Build() : File.ReadAllBytes(GuestBuild.Path(guest));
        Assert.True(machine.TryCreateDomain(new DomainConfig(guest, kernel, GuestMemory, cmdline, modules), out var domain, out string error), error);
        return domain!;
    }

    private static Domain RunOne(string guest, string cmdline = "", List<string>? log = null)
    {
        var machine = NewMachine(log);
        var domain = Boot(machine, guest, cmdline);
        machine.Run();
        return domain;
    }

    [Fact]
    public void Demo_guest_greets_prints_the_version_and_powers_off()
    {
        var d = RunOne("demo");
        Assert.Equal(DemoGuest.Greeting + "Running on Xen 4.17\n", d.Console.Transcript);
        Assert.Equal(DomainState.Shutdown, d.State);
        Assert.Equal(ShutdownReason.Poweroff, d.ShutdownReason);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
    }

    [Fact]
    public void Hello_finds_xen_and_echoes_its_command_line()
    {
        var d = RunOne("hello.elf", "console=hvc0 answer=42");
        Assert.Equal("Hello from a PVH guest!\nRunning on Xen 4.17\nCOM1: ok\nport 0xE9: ok\ncmdline: console=hvc0 answer=42\n", d.Console.Transcript);
        Assert.True(d.Vcpus[0].ExitsFor(Vmx.VmxExitReason.IoInstruction) >= 10);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
        Assert.True(d.Vcpus[0].ExitsFor(Vmx.VmxExitReason.Vmcall) >= 5);
        Assert.True(d.Vcpus[0].ExitsFor(Vmx.VmxExitReason.Cpuid) >= 2);
    }

    [Fact]
    public void Xen_version_guest_sees_every_sub_op_start_info_and_memory_ops()
    {
        var machine = NewMachine();
        var d = Boot(machine, "xen_version.elf", "hello world", [new PvhModule(Encoding.ASCII.GetBytes("module-payload-0123456789"), "initrd args")]);
        d.Console.EnqueueInput("typed"u8);
        machine.Run();
        string t = d.Console.Transcript;
        foreach (string line in new[]
        {
            "cpuid version: 0x00040011", "version: 4.17", "extraversion rc: 0", "extraversion: .0-vmmkit",
            "compile_info rc: 0", "capabilities: hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64", "changeset rc: 0",
            "platform_parameters rc: 0", "virt_start: 0xffffffff", "get_features rc: 0", "features[0]: 0x00012305",
            "pagesize: 4096", "guest_handle rc: 0", "commandline rc: 0", "build_id rc: -1",
            "current_reservation: 4096", "memory_map rc: 0", "memory_map entries: 2", "memory_map: 0x00000000 size 0x00ffd000 type 1",
            "memory_map: 0x00ffd000 size 0x00003000 type 2",
            "add_to_physmap rc: 0", "shared_info first byte: 0", "add_to_physmap idx 1: -22", "add_to_physmap grant_table: 0",
            "set_param CALLBACK_IRQ: 0", "CALLBACK_IRQ value: 0x020000000x000000f3", "set_param STORE_PFN: -1",
            "get_param IOREQ_PFN: -1", "get_param 1000: -22", "get_param domid 77: -3",
            "console_io read: 5", "console input: typed", "sched_op yield: 0",
            "start_info magic: 0x336ec578", "start_info version: 1", "modules: 1", "module size: 25",
            "module cmdline: initrd args", "module first bytes: module-payload-0",
            "start_info memmap: 0x00000000 size 0x00ffd000 type 1",
            "start_info memmap: 0x00ffd000 size 0x00003000 type 2", "cmdline: hello world",
        })
            Assert.Contains(line + "\n", t);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
    }

    [Fact]
    public void Bad_pointers_get_efault_and_the_guest_carries_on()
    {
        var d = RunOne("misbehave.elf", "badptr");
        foreach (string call in new[]
        {
            "console_io write wild", "xen_version extraversion wild", "xen_version compile_info wild", "sched_op shutdown wild",
            "memory_op current_reservation wild", "hvm_op get_param wild", "console_io write wrap",
        })
            Assert.Contains($"{call}: -14\n", d.Console.Transcript);
        Assert.EndsWith("misbehave: still alive\n", d.Console.Transcript);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
    }

    [Fact]
    public void Unknown_hypercalls_and_sub_ops_get_enosys()
    {
        var d = RunOne("misbehave.elf", "unknown");
        foreach (string call in new[]
        {
            "hypercall 60", "hypercall 127", "xen_version 99",
            "sched_op 99", "memory_op 99", "hvm_op 99",
        })
            Assert.Contains($"{call}: -38\n", d.Console.Transcript);
        // do_console_io asks xsm_console_io before the command: a guest's unknown command is -EPERM (Xen 4.17).
        Assert.Contains("console_io 7: -1\n", d.Console.Transcript);
        // domctl and sysctl exist (for the control domain, src/Host). Xen 4.17's do_domctl and do_sysctl read the
        // buffer and check its interface version before XSM: the guest's address 0 holds zeros, so -EACCES.
        Assert.Contains("hypercall sysctl: -13\n", d.Console.Transcript);
        Assert.Contains("hypercall domctl: -13\n", d.Console.Transcript);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
    }

    [Fact]
    public void An_unknown_msr_raises_general_protection_in_the_guest()
    {
        var log = new List<string>();
        var d = RunOne("misbehave.elf", "badmsr", log);
        Assert.Contains(log, l => l.Contains("RDMSR 0xdeadbeef -> #GP"));
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Contains("#GP caught: 1\n", d.Console.Transcript);
    }

    [Fact]
    public void A_guest_reported_crash_sets_the_crash_exit_status()
    {
        var d = RunOne("misbehave.elf", "crash");
        Assert.Equal(ShutdownReason.Crash, d.ShutdownReason);
        Assert.Equal(ExitCodes.GuestCrash, ExitCodes.For(d));
    }

    [Theory]
    [InlineData("wildjump", "EPT violation at gpa 0xdead0000")]
    [InlineData("triplefault", "triple fault")]
    public void A_crashing_domain_is_dumped_while_a_second_domain_keeps_running(string variant, string why)
    {
        var log = new List<string>();
        var machine = NewMachine(log);
        var bad = Boot(machine, "misbehave.elf", variant);
        var good = Boot(machine, "workload.elf", "iterations=2");
        machine.Run();

        Assert.Equal(DomainState.Crashed, bad.State);
        Assert.Contains(why, bad.CrashReport);
        Assert.Contains("rip ", bad.CrashReport);
        Assert.Contains("rax ", bad.CrashReport);
        Assert.Contains(log, l => l.Contains("domain_crash: d1"));
        Assert.Equal(ExitCodes.DomainCrashed, ExitCodes.For(bad));

        Assert.Equal(DomainState.Shutdown, good.State);
        Assert.Equal(ShutdownReason.Poweroff, good.ShutdownReason);
        Assert.Contains($"workload checksum: {NativeChecksum(2)}\n", good.Console.Transcript);
    }

    [Fact]
    public void The_workload_checksum_matches_the_native_build()
    {
        var d = RunOne("workload.elf", "iterations=3");
        Assert.Equal($"workload iterations: 3\nworkload checksum: {NativeChecksum(3)}\n", d.Console.Transcript);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
    }

    [Fact]
    public void The_instruction_budget_crashes_a_guest_that_runs_too_long()
    {
        var machine = NewMachine();
        machine.MaxInstructionsPerVcpu = 100_000;
        var d = Boot(machine, "workload.elf", "iterations=1000");
        machine.Run();
        Assert.Equal(DomainState.Crashed, d.State);
        Assert.Contains("instruction budget", d.CrashReport);
    }

    [Fact]
    public void A_bad_kernel_is_refused_and_the_machine_still_boots_the_next_one()
    {
        using var machine = NewMachine();
        Assert.False(machine.TryCreateDomain(new DomainConfig("junk", Encoding.ASCII.GetBytes("not a kernel at all"), GuestMemory), out _, out string error));
        Assert.Contains("not an ELF", error);
        var ok = Boot(machine, "hello.elf");
        machine.Run();
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(ok));
        Assert.Single(machine.Domains);
    }

    /// <summary>
    /// A kernel whose XEN_ELFNOTE_FEATURES requires <c>dom0</c> ("!dom0") runs only as the control domain: Xen 4.17's
    /// toolstack refuses it for every domain it builds (xg_dom_elfloader.c, xc_dom_parse_elf_kernel).
    /// </summary>
    [Fact]
    public void A_kernel_that_requires_dom0_is_refused_for_a_guest()
    {
        byte[] kernel = Elf32ImageWriter.Write(0x100000, [0xFA, 0xF4], 0x1000, 0x100000); // cli; hlt
        Assert.True(ElfImage.TryParse(kernel, out var plain, out _) && !plain!.RequiresDom0);
        // A second note after the PHYS32_ENTRY one (Elf32ImageWriter: headers, then that 20-byte note at 116).
        var s = kernel.AsSpan();
        const int note = 116 + 20;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(s[note..], 4);          // namesz
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(s[(note + 4)..], 6);    // descsz
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(s[(note + 8)..], 10);   // XEN_ELFNOTE_FEATURES
        "Xen\0!dom0\0"u8.CopyTo(s[(note + 12)..]);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(s[(52 + 32 + 16)..], 20 + 24); // PT_NOTE p_filesz
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(s[(52 + 32 + 20)..], 20 + 24); // p_memsz
        Assert.True(ElfImage.TryParse(kernel, out var image, out string parseError), parseError);
        Assert.True(image!.RequiresDom0);

        using var machine = NewMachine();
        Assert.False(machine.TryCreateDomain(new DomainConfig("dom0-only", kernel, GuestMemory), out _, out string error));
        Assert.Contains("does not support unprivileged (DomU) operation", error);
        Assert.Empty(machine.Domains);
    }

    [Fact]
    public void The_cli_boots_the_demo_guest_and_exits_zero()
    {
        var (code, stdout, _) = RunCli();
        Assert.Equal(0, code);
        Assert.Equal(DemoGuest.Greeting + "Running on Xen 4.17\n", stdout);
    }

    [Fact]
    public void The_cli_exit_status_follows_the_shutdown_reason()
    {
        Assert.Equal(ExitCodes.GuestCrash, RunCli("boot", GuestBuild.Path("misbehave.elf"), "--cmdline", "crash").Code);
        var (code, _, stderr) = RunCli("boot", GuestBuild.Path("misbehave.elf"), "--cmdline", "triplefault");
        Assert.Equal(ExitCodes.DomainCrashed, code);
        Assert.Contains("triple fault", stderr);
        Assert.Equal(ExitCodes.StartFailure, RunCli("boot", "/nonexistent/kernel.elf").Code);
    }

    [Fact]
    public void The_cli_documents_exit_statuses_and_writes_the_demo_elf()
    {
        var (code, help, _) = RunCli("--help");
        Assert.Equal(0, code);
        Assert.Contains("0 poweroff", help);
        Assert.Contains("8 the hypervisor crashed the domain", help);

        string path = Path.Combine(Path.GetTempPath(), $"vmmkit-demo-{Environment.ProcessId}.elf");
        Assert.Equal(0, RunCli("write-demo", path).Code);
        Assert.True(ElfImage.TryParse(File.ReadAllBytes(path), out _, out string error), error);
        var (bootCode, stdout, _) = RunCli("boot", path);
        Assert.Equal(0, bootCode);
        Assert.StartsWith(DemoGuest.Greeting, stdout);
        File.Delete(path);
    }

    private static string NativeChecksum(int iterations)
    {
        var psi = new ProcessStartInfo(GuestBuild.Path("workload-native"), iterations.ToString()) { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        string line = output.Split('\n').Single(l => l.StartsWith("workload checksum: ", StringComparison.Ordinal));
        return line["workload checksum: ".Length..];
    }

    internal static (int Code, string Stdout, string Stderr) RunCli(params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "vmmkit-hv.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }
}
