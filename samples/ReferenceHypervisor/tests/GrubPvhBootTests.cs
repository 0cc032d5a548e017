using System.Buffers.Binary;
using System.Text;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.TestSupport;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Debian's GRUB PVH image (grub-xen-host) on this hypervisor without a Dom0: how far it gets. It maps shared_info,
/// reads the HVM params, sets up its grant table and event channel, then sends its first XenStore request on the store
/// ring and yields until a reply comes; with no xenstored yet, none does. The test pins that point: the request on the
/// ring and the SCHEDOP_yield loop after it.
/// </summary>
public class GrubPvhBootTests
{
    private const string GrubImage = "/usr/lib/grub-xen/grub-i386-xen_pvh.bin";

    [Fact]
    public void Grub_pvh_sets_up_grants_and_events_then_waits_for_its_first_xenstore_reply()
    {
        RequiredTool.RequireFile(GrubImage, "grub-xen-host");
        var log = new List<string>();
        using var machine = new Machine(128 << 20, ProcessorProviders.CreateDefault()) { Logger = log.Add, MaxInstructionsPerVcpu = 5_000_000 };
        var calls = new Dictionary<string, int>();
        machine.Trace = (vcpu, exit) =>
        {
            if (exit.Reason != VmxExitReason.Vmcall)
                return;
            var nr = (HypercallNumber)(uint)vcpu.Registers.Rax;
            string key = nr is HypercallNumber.SchedOp or HypercallNumber.HvmOp or HypercallNumber.MemoryOp or HypercallNumber.GrantTableOp
                or HypercallNumber.EventChannelOp ? $"{nr}/{(uint)vcpu.Registers.Rbx}" : nr.ToString();
            calls[key] = calls.GetValueOrDefault(key) + 1;
        };
        byte[] kernel = File.ReadAllBytes(GrubImage);
        Assert.True(machine.TryCreateDomain(new DomainConfig("grub", kernel, 64 << 20, ""), out var d, out string error), error);
        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(120), "grub");

        // It set up shared_info and its grant table (add_to_physmap twice, GNTTABOP_set_version and setup_table), read its
        // HVM params and notified the store port.
        string summary = string.Join(", ", calls.OrderBy(c => c.Key).Select(c => $"{c.Key}: {c.Value}"));
        Assert.True(calls.GetValueOrDefault("MemoryOp/7") >= 2, summary);
        Assert.True(calls.GetValueOrDefault($"GrantTableOp/{(uint)VmmKit.GrantTable.GrantTableOp.SetupTable}") >= 1, summary);
        Assert.True(calls.GetValueOrDefault($"HvmOp/{(uint)HvmOp.GetParam}") >= 2, summary);
        Assert.True(calls.GetValueOrDefault($"EventChannelOp/{(uint)VmmKit.EventChannel.EventChannelOp.Send}") >= 1, summary);
        // Then it waits for the reply with SCHEDOP_yield until the instruction budget ends the run: nothing else went wrong.
        Assert.True(calls.GetValueOrDefault("SchedOp/0") > 1000, summary);
        Assert.Equal(DomainState.Crashed, d!.State);
        Assert.Contains("instruction budget exhausted", d.CrashReport);

        // Its first XenStore request is on the store ring: XS_DIRECTORY "device/vbd" (xen/io/xs_wire.h), unanswered.
        ulong storePfn = d.GetHvmParam(HvmParam.StorePfn);
        Assert.True(d.Ept.TryLookup(new GuestFrameNumber(storePfn), out var frame, out _));
        Span<byte> ring = machine.Memory.GetFrame(frame);
        uint reqCons = BinaryPrimitives.ReadUInt32LittleEndian(ring[2048..]);
        uint reqProd = BinaryPrimitives.ReadUInt32LittleEndian(ring[2052..]);
        uint rspProd = BinaryPrimitives.ReadUInt32LittleEndian(ring[2060..]);
        Assert.Equal((0u, 16u + 11u, 0u), (reqCons, reqProd, rspProd));
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(ring);
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(ring[12..]);
        Assert.Equal(1u, type);   // XS_DIRECTORY
        Assert.Equal("device/vbd\0", Encoding.ASCII.GetString(ring.Slice(16, (int)len)));
        // It printed nothing on the console ring before that point.
        Assert.Equal("", d.Console.Transcript);
    }
}
