using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Cli;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The attacks of issue 10 as regression tests (samples/guests/hostile): nothing a guest does may end the
/// hypervisor with a host exception, budgets hold, errnos are Xen's, and the other domain carries on.
/// </summary>
public class HostileGuestTests
{
    private const ulong GuestMemory = 16 << 20;

    private static Machine NewMachine(List<string>? log = null, IProcessorProvider? processors = null) =>
        new(64 << 20, processors ?? ProcessorProviders.CreateDefault()) { Logger = m => { lock (log ?? []) log?.Add(m); }, MaxInstructionsPerVcpu = 200_000_000 };

    private static Domain Boot(Machine machine, string guest, string cmdline = "")
    {
        byte[] kernel = File.ReadAllBytes(GuestBuild.Path(guest));
        Assert.True(machine.TryCreateDomain(new DomainConfig(guest, kernel, GuestMemory, cmdline), out var domain, out string error), error);
        return domain!;
    }

    /// <summary>Runs the machine on another thread and fails (instead of hanging) when it does not stop in time.</summary>
    internal static void RunBounded(Machine machine, TimeSpan limit, string what)
    {
        var run = Task.Run(machine.Run);
        Assert.True(run.Wait(limit), $"{what}: the machine did not stop within {limit.TotalSeconds} s");
    }

    private static void AssertWorkloadFinished(Domain good)
    {
        Assert.True(good.State == DomainState.Shutdown, good.CrashReport);
        Assert.Equal(ShutdownReason.Poweroff, good.ShutdownReason);
        Assert.Contains("workload checksum: ", good.Console.Transcript);
    }

    [Fact]
    public void Moving_shared_info_back_and_forth_keeps_working_and_the_other_domain_finishes()
    {
        using var machine = NewMachine();
        var bad = Boot(machine, "hostile.elf", "physmap=600");
        var good = Boot(machine, "workload.elf", "iterations=1");
        ulong before = machine.Memory.FramesOwnedBy(bad.Owner);
        RunBounded(machine, TimeSpan.FromSeconds(120), "physmap ping-pong");
        Assert.True(bad.State == DomainState.Shutdown, bad.CrashReport);
        Assert.Contains("physmap rounds: 600\nphysmap failures: 0\n", bad.Console.Transcript);
        Assert.True(machine.Memory.FramesOwnedBy(bad.Owner) <= before + 8, "the EPT table pool must stay bounded");
        AssertWorkloadFinished(good);
    }

    [Fact]
    public void A_domain_without_quota_for_an_ept_table_gets_enomem_and_carries_on()
    {
        using var machine = NewMachine();
        var bad = Boot(machine, "hostile.elf", "physmap=20");
        var good = Boot(machine, "workload.elf", "iterations=1");
        // Use up the domain's frame quota, so the tables for a new mapping cannot be allocated.
        while (machine.Memory.TryAllocateFrame(bad.Owner, out _))
        {
        }

        RunBounded(machine, TimeSpan.FromSeconds(120), "physmap without quota");
        Assert.True(bad.State == DomainState.Shutdown, bad.CrashReport);
        Assert.Contains($"physmap first error: {XenErrno.ENOMEM.Negated()}\n", bad.Console.Transcript);
        Assert.EndsWith("hostile: still alive\n", bad.Console.Transcript);
        AssertWorkloadFinished(good);
    }

    [Fact]
    public void A_host_exception_in_the_run_loop_crashes_only_that_domain_with_a_dump()
    {
        var log = new List<string>();
        var provider = new FaultyProcessorProvider(failOnRun: 3);
        using var machine = NewMachine(log, provider);
        var bad = Boot(machine, "hostile.elf", "yield=10");
        var good = Boot(machine, "workload.elf", "iterations=1");
        RunBounded(machine, TimeSpan.FromSeconds(120), "faulty processor");
        Assert.Equal(DomainState.Crashed, bad.State);
        Assert.Contains("host exception", bad.CrashReport);
        Assert.Contains(FaultyProcessor.Message, bad.CrashReport);
        Assert.Contains("rip ", bad.CrashReport);
        Assert.Equal(ExitCodes.DomainCrashed, ExitCodes.For(bad));
        AssertWorkloadFinished(good);
    }

    [Fact]
    public void The_instruction_budget_stops_a_guest_that_keeps_yielding()
    {
        using var machine = NewMachine();
        machine.MaxInstructionsPerVcpu = 20_000;
        var d = Boot(machine, "hostile.elf", "yield=1000000");
        RunBounded(machine, TimeSpan.FromSeconds(120), "yield loop");
        Assert.Equal(DomainState.Crashed, d.State);
        Assert.Contains("instruction budget", d.CrashReport);
        Assert.InRange(d.Vcpus[0].InstructionsRetired, 20_000ul, 40_000ul);
        Assert.DoesNotContain("yields:", d.Console.Transcript);
    }

    [Fact]
    public void A_long_grant_copy_batch_gives_the_processor_back_and_is_continued()
    {
        // One VMCALL asking for 100,000 GNTTABOP_copy operations: Xen checks hypercall_preempt_check between them and
        // continues the call (the guest re-executes VMCALL), so no batch holds the processor for its whole length.
        const int operations = 100_000;
        using var machine = NewMachine();
        var bad = Boot(machine, "hostile.elf", $"grantcopy={operations}");
        var good = Boot(machine, "workload.elf", "iterations=1");
        RunBounded(machine, TimeSpan.FromSeconds(120), "long grant copy");
        Assert.True(bad.State == DomainState.Shutdown, bad.CrashReport);
        Assert.Contains($"grantcopy ops: {operations}\ngrantcopy rc: 0\ngrantcopy failed: 0\ngrantcopy bytes match: 1\n", bad.Console.Transcript);
        Assert.True(bad.Vcpus[0].ExitsFor(VmxExitReason.Vmcall) >= operations / HypercallPreemption.OperationsPerExit,
            $"{bad.Vcpus[0].ExitsFor(VmxExitReason.Vmcall)} VMCALL exits: the batch was not continued in pieces");
        AssertWorkloadFinished(good);
    }

    [Fact]
    public void A_long_console_write_gives_the_processor_back_and_is_continued()
    {
        // One CONSOLEIO_write of 512 KiB: Xen's guest_console_write checks hypercall_preempt_check between its chunks
        // and continues the call with the count and buffer advanced, as for a batch (XSA-380's class).
        const int bytes = 512 << 10;
        int longWrites = 0;
        using var machine = NewMachine();
        machine.Trace = (vcpu, exit) =>
        {
            // The 32-bit ABI: EBX cmd, ECX count, EDX buffer. The guest's own prints are short.
            if (exit.Reason == VmxExitReason.Vmcall && vcpu.Registers.Rax == (ulong)HypercallNumber.ConsoleIo &&
                (uint)vcpu.Registers.Rcx >= 4096)
                Interlocked.Increment(ref longWrites);
        };
        var bad = Boot(machine, "hostile.elf", $"conwrite={bytes}");
        var good = Boot(machine, "workload.elf", "iterations=1");
        RunBounded(machine, TimeSpan.FromSeconds(120), "long console write");
        Assert.True(bad.State == DomainState.Shutdown, bad.CrashReport);
        string t = bad.Console.Transcript;
        Assert.Contains($"conwrite bytes: {bytes}\nconwrite rc: 0\n", t);
        Assert.Equal(bytes / 64 * 63, t.Count(c => c == 'x'));
        Assert.True(longWrites >= bytes / (127 * (int)HypercallPreemption.OperationsPerExit),
            $"{longWrites} VMCALL exits of the write: it was not continued in pieces");
        Assert.True(bad.Vcpus[0].HypercallOperations >= bytes / 127 - 8, $"{bad.Vcpus[0].HypercallOperations} operations charged");
        AssertWorkloadFinished(good);
    }

    [Fact]
    public void A_long_hypercall_batch_is_charged_to_the_instruction_budget()
    {
        // One VMCALL retires one instruction however many operations it names, so a guest could spend the host's time
        // many times over its budget. Each operation a batch checks for preemption counts against --max-instructions.
        const int operations = 100_000;
        ulong beforeBatch = 0;
        using (var unlimited = NewMachine())
        {
            // The instructions the guest retires before its VMCALL of GNTTABOP_copy.
            unlimited.Trace = (vcpu, exit) =>
            {
                if (exit.Reason == VmxExitReason.Vmcall && vcpu.Registers.Rax == (ulong)HypercallNumber.GrantTableOp && beforeBatch == 0)
                    beforeBatch = vcpu.InstructionsRetired;
            };
            var d = Boot(unlimited, "hostile.elf", $"grantcopy={operations}");
            RunBounded(unlimited, TimeSpan.FromSeconds(120), "long grant copy, no budget");
            Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
            Assert.NotEqual(0ul, beforeBatch);
            // About one check per operation (not before the first of a call, continued or not, nor of a 32-bit chunk).
            Assert.InRange(d.Vcpus[0].HypercallOperations, (ulong)operations * 99 / 100, (ulong)operations);
        }

        // Room for every instruction before the batch and half the batch: the budget ends the guest within the batch.
        using var machine = NewMachine();
        machine.MaxInstructionsPerVcpu = beforeBatch + (operations / 2);
        var bad = Boot(machine, "hostile.elf", $"grantcopy={operations}");
        RunBounded(machine, TimeSpan.FromSeconds(120), "long grant copy, budget");
        Assert.Equal(DomainState.Crashed, bad.State);
        Assert.Contains("instruction budget", bad.CrashReport);
        Assert.DoesNotContain("grantcopy ops", bad.Console.Transcript);
        ulong charged = bad.Vcpus[0].InstructionsRetired + bad.Vcpus[0].HypercallOperations;
        Assert.InRange(charged, machine.MaxInstructionsPerVcpu, machine.MaxInstructionsPerVcpu + HypercallPreemption.OperationsPerExit);
    }

    [Fact]
    public void Errnos_are_the_ones_xen_returns()
    {
        using var machine = NewMachine();
        var d = Boot(machine, "hostile.elf", "errno");
        RunBounded(machine, TimeSpan.FromSeconds(120), "errno");
        string t = d.Console.Transcript;
        foreach (string line in new[]
        {
            "console_io read count 0x80000000: -7", "console_io read count 0xffffffff: -7",
            "maximum_ram_page extent 1: -22", "current_reservation extent 1: -22", "add_to_physmap extent 0x10000: -33",
            "add_to_physmap extent 0xffff: 0", "memory_map extent 1: -38", "memory_map extent 0: 0",
            "X87_FIP_WIDTH 3: -22", "X87_FIP_WIDTH 4: 0", "X87_FIP_WIDTH 8: 0", "X87_FIP_WIDTH 0x100000008: -22", "X87_FIP_WIDTH 0: 0",
            "ACPI_IOPORTS_LOCATION 1: -19", "ACPI_IOPORTS_LOCATION 0: -19", "X87_FIP_WIDTH value: 0",
        })
            Assert.Contains(line + "\n", t);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
    }

    [Fact]
    public void Pvclock_wallclock_register_vcpu_info_and_runstate_area_work_as_linux_uses_them()
    {
        using var machine = NewMachine();
        var d = Boot(machine, "pvclock.elf");
        RunBounded(machine, TimeSpan.FromSeconds(120), "pvclock");
        string t = d.Console.Transcript;
        foreach (string line in new[]
        {
            "set CALLBACK_IRQ: 0", "add_to_physmap: 0", "version even: 1", "tsc_to_system_mul: 0x80000000", "tsc_shift: 1",
            $"flags: {VcpuTimeInfo.TscStableBit}", "timestamp not after now: 1", "monotonic: 1", "system time tracks tsc: 1",
            "wc_version even: 1", "wallclock after 2020: 1", "wc_nsec below 1e9: 1",
            "register offset 4033: -6", "register hole gfn: -22", "register vcpu 5: -2", "register bad pointer: -14",
            "register: 0", "register again: -22", "upcall_pending: 1", "pending_sel: 0xffffffff",
            "registered tsc_to_system_mul: 0x80000000", "registered version even: 1", "registered clock monotonic: 1",
            "get_runstate_info: 0", "runstate state: 0", "runstate running time positive: 1", "runstate entry not in future: 1",
            "get_runstate_info vcpu 1: -2", "get_runstate_info bad pointer: -14", "vcpu_op send_nmi: -38",
            "register runstate area: 0", "runstate area state: 0", "runstate area updated: 1", "register runstate area wild: 0",
            "register runstate area bad pointer: -14",
        })
            Assert.Contains(line + "\n", t);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
    }

    [Fact]
    public void The_cli_survives_the_issue_10_reproductions_with_documented_exit_statuses()
    {
        // Issue 10 item 1: ~20 moves of shared_info ended the process with an unhandled .NET exception (status 1).
        var (code, stdout, stderr) = GuestBootTests.RunCli("boot", GuestBuild.Path("hostile.elf"), "--memory", "64", "--cmdline", "physmap=200");
        Assert.True(code == ExitCodes.Poweroff, $"status {code}\n{stderr}");
        Assert.Contains("physmap failures: 0\n", stdout);
        Assert.DoesNotContain("Unhandled exception", stderr);

        // Issue 10 item 2: a yield loop ran for minutes past a 20,000-instruction budget.
        (code, stdout, stderr) = GuestBootTests.RunCli("boot", GuestBuild.Path("hostile.elf"), "--max-instructions", "20000", "--cmdline", "yield=1000000");
        Assert.True(code == ExitCodes.DomainCrashed, $"status {code}\n{stderr}");
        Assert.Contains("instruction budget", stderr);
        Assert.DoesNotContain("yields:", stdout);
    }

    /// <summary>A processor that throws a host exception on its Nth VM entry (only the first processor created).</summary>
    private sealed class FaultyProcessorProvider(int failOnRun) : IProcessorProvider
    {
        private readonly IProcessorProvider _inner = ProcessorProviders.CreateDefault();
        private int _created;

        public VmxCapabilities Capabilities => _inner.Capabilities;

        public VmcsHostState HostState => _inner.HostState;

        public IVirtualProcessor Create(MachineMemory memory)
        {
            var p = _inner.Create(memory);
            return _created++ == 0 ? new FaultyProcessor(p, failOnRun) : p;
        }
    }

    private sealed class FaultyProcessor(IVirtualProcessor inner, int failOnRun) : IVirtualProcessor, IDisposable
    {
        public const string Message = "injected host fault";
        private int _runs;

        public ref GuestRegisters Registers => ref inner.Registers;

        public ulong InstructionsRetired => inner.InstructionsRetired;

        public VmExit Run(Vmcs vmcs) => ++_runs == failOnRun ? throw new InvalidOperationException(Message) : inner.Run(vmcs);

        public void InvalidateEpt(InveptType type, EptPointer eptPointer) => inner.InvalidateEpt(type, eptPointer);

        public void RequestExit() => inner.RequestExit();

        public void Dispose() => (inner as IDisposable)?.Dispose();
    }
}
