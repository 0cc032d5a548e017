using System.Buffers.Binary;
using VmmKit.Dom0.Xen;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Tests;

/// <summary>Slice step 1: the Dom0 channel and domain 0, against <c>vmmkit-hv host</c> as a process.</summary>
public sealed class HypervisorChannelTests
{
    [Fact]
    public void Dom0_makes_xen_version_as_domain_0()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var privcmd = new Privcmd(channel);
        Assert.Equal((4L << 16) | 17, privcmd.Hypercall(HypercallNumber.XenVersion, (ulong)XenVersionCommand.Version));

        // XENVER_extraversion writes Xen's string into Dom0's buffer: a pointer argument is a Dom0 guest-physical address.
        using var buffer = privcmd.Buffers.Rent(16);
        Assert.Equal(0, privcmd.Hypercall(HypercallNumber.XenVersion, (ulong)XenVersionCommand.Extraversion, buffer.Address));
        Assert.NotEqual(0, buffer.Span[0]);
        // A pointer outside Dom0's memory is -EFAULT, as for any guest.
        Assert.Equal(XenErrno.EFAULT.Negated(), privcmd.Hypercall(HypercallNumber.XenVersion, (ulong)XenVersionCommand.Extraversion, 1ul << 40));
    }

    [Fact]
    public void Machine_memory_is_shared_Dom0_sees_its_own_frames_in_the_file()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        Assert.Equal(128ul << 20, channel.MachineBytes);
        Assert.True(channel.Dom0Pages > 0);
        var privcmd = new Privcmd(channel);
        Span<long> r = stackalloc long[2];
        privcmd.MmapBatch(0, [0, 1], r);
        Assert.Equal((long)channel.Dom0FirstFrame, r[0]);
        Assert.Equal((long)channel.Dom0FirstFrame + 1, r[1]);
        channel.Dom0Memory(4096 + 8, 1)[0] = 0x77;
        Assert.Equal(0x77, channel.Frame((ulong)r[1])[8]);
        Assert.Equal(0, privcmd.Unmap([(ulong)r[0], (ulong)r[1]]));
        Assert.Equal(XenErrno.EINVAL.Negated(), privcmd.Unmap([(ulong)r[0]]));   // no longer held
    }

    [Fact]
    public void Malformed_messages_drop_Dom0_and_the_hypervisor_carries_on()
    {
        using var host = HostProcess.Start();
        byte[][] attacks =
        [
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],   // bad magic
            Header(type: 99, length: 0),                                                                   // unknown type
            Header(type: 2, length: 1 << 30),                                                              // huge payload
            [.. Header(type: 2, length: 8), .. new byte[8]],                                               // short HYPERCALL
            [.. Header(type: 3, length: 8), 1, 0, 0, 0, 0xFF, 0xFF, 0, 0],                                 // MMAPBATCH count past its payload
            Header(type: 5, length: 0),                                                                    // EVENT from Dom0
        ];
        foreach (var attack in attacks)
        {
            using var channel = host.Connect();
            var closed = new ManualResetEventSlim();
            channel.Disconnected += closed.Set;
            channel.SendRaw(attack);
            Assert.True(closed.Wait(TimeSpan.FromSeconds(30)), $"not disconnected after {Convert.ToHexString(attack[..8])}");
        }

        Assert.False(host.HasExited);
        using var good = host.Connect();
        Assert.Equal((4L << 16) | 17, new Privcmd(good).Hypercall(HypercallNumber.XenVersion));
    }

    [Fact]
    public void A_second_Dom0_is_refused_while_one_is_connected()
    {
        using var host = HostProcess.Start();
        using var first = host.Connect();
        Assert.Throws<IOException>(() => host.Connect());
        Assert.Equal((4L << 16) | 17, new Privcmd(first).Hypercall(HypercallNumber.XenVersion));
    }

    [Fact]
    public async Task Domain_0s_ports_fire_as_EVENT_messages_once_until_unmasked()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var privcmd = new Privcmd(channel);
        using var evtchn = new XenEvtchn(privcmd);
        uint a = evtchn.BindUnboundPort(0);
        uint b = evtchn.BindInterdomain(0, a);   // a loop within domain 0; binding sets the new port pending (Xen's evtchn_bind_interdomain)
        Assert.Equal(b, await Next(evtchn));
        evtchn.Unmask(b);

        evtchn.Notify(b);
        Assert.Equal(a, await Next(evtchn));
        evtchn.Notify(b);                         // a is masked until unmasked: no second message...
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await Next(evtchn, 300));
        evtchn.Unmask(a);                          // ...and unmasking a pending port fires it again
        Assert.Equal(a, await Next(evtchn));

        var e = Assert.Throws<VmmKit.EventChannel.EventChannelException>(() => evtchn.Notify(4000));
        Assert.Equal(XenErrno.EINVAL, e.Errno);
    }

    [Fact]
    public void Multicall_runs_each_entry_through_the_hypercall_table_and_writes_each_result_back()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var privcmd = new Privcmd(channel);
        const int entry = 64;   // struct multicall_entry (xen.h), 64-bit: op, result, args[6]
        using var b = privcmd.Buffers.Rent(8 * entry);
        ulong alloc = b.Address + (6 * entry);   // a struct evtchn_alloc_unbound after the list
        ulong[][] calls =
        [
            [(ulong)HypercallNumber.XenVersion, (ulong)XenVersionCommand.Version],
            [9999],                                                                        // no such hypercall
            [(ulong)HypercallNumber.Multicall, b.Address, 1],                              // nested: refused in its entry
            [(ulong)HypercallNumber.EventChannelOp, (ulong)VmmKit.EventChannel.EventChannelOp.AllocUnbound, alloc],
            [(ulong)HypercallNumber.XenVersion, (ulong)XenVersionCommand.Extraversion, 1ul << 40],   // a bad pointer in one entry
            [(ulong)HypercallNumber.SchedOp, 1234],                                        // an unknown sub-operation
        ];
        Span<byte> list = b.Span;
        list.Clear();
        for (int i = 0; i < calls.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(list[(i * entry)..], calls[i][0]);
            BinaryPrimitives.WriteUInt64LittleEndian(list[((i * entry) + 8)..], 0xDEAD);
            for (int a = 1; a < calls[i].Length; a++)
                BinaryPrimitives.WriteUInt64LittleEndian(list[((i * entry) + 8 + (a * 8))..], calls[i][a]);
        }

        BinaryPrimitives.WriteUInt16LittleEndian(list[(6 * entry)..], DomainId.Self);   // dom
        BinaryPrimitives.WriteUInt16LittleEndian(list[((6 * entry) + 2)..], 0);         // remote_dom

        Assert.Equal(0, privcmd.Hypercall(HypercallNumber.Multicall, b.Address, (ulong)calls.Length));
        long Result(int i) => BinaryPrimitives.ReadInt64LittleEndian(b.Span[((i * entry) + 8)..]);
        Assert.Equal((4L << 16) | 17, Result(0));
        Assert.Equal(XenErrno.ENOSYS.Negated(), Result(1));
        Assert.Equal(XenErrno.EINVAL.Negated(), Result(2));
        Assert.Equal(0, Result(3));
        uint port = BinaryPrimitives.ReadUInt32LittleEndian(list[((6 * entry) + 4)..]);
        Assert.NotEqual(0u, port);                                                   // the entry's own struct was written
        Assert.Equal(XenErrno.EFAULT.Negated(), Result(4));
        Assert.Equal(XenErrno.ENOSYS.Negated(), Result(5));
        Assert.Equal((ulong)HypercallNumber.XenVersion, BinaryPrimitives.ReadUInt64LittleEndian(list));   // only results are written back
        Assert.Equal(0, privcmd.Hypercall(HypercallNumber.Multicall, b.Address, 0));                   // no entries: nothing to do

        // A list outside the caller's memory is -EFAULT for the whole call; a count running off its memory too.
        Assert.Equal(XenErrno.EFAULT.Negated(), privcmd.Hypercall(HypercallNumber.Multicall, 1ul << 40, 1));
        channel.Dom0Memory((channel.Dom0Pages << 12) - entry, entry).Clear();   // op 0, set_trap_table: -ENOSYS for PVH
        Assert.Equal(XenErrno.EFAULT.Negated(), privcmd.Hypercall(HypercallNumber.Multicall, (channel.Dom0Pages << 12) - entry, 2));
        Assert.False(host.HasExited);
    }

    [Fact]
    public void A_Dom0_that_sends_without_reading_is_stopped_by_flow_control_and_the_hypervisor_carries_on()
    {
        using var host = HostProcess.Start();
        // A raw client that never reads (not even WELCOME): each HYPERCALL's reply has nowhere to go.
        using (var stalled = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            stalled.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(host.SocketPath));
            stalled.SendTimeout = 3000;
            byte[] request = [.. Header(type: 2, length: 48), .. new byte[48]];
            BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(HypervisorChannel.HeaderSize), (ulong)HypercallNumber.XenVersion);
            const int attempts = 200_000;   // 14 MB of requests: far more than the sockets' buffers hold
            int sent = 0;
            try
            {
                for (; sent < attempts; sent++)
                    stalled.Send(request);
            }
            catch (System.Net.Sockets.SocketException)
            {
                // The send timed out: the hypervisor stopped reading.
            }

            // Without flow control the hypervisor would take every request and queue every reply in its own memory.
            Assert.True(sent < attempts, $"the hypervisor took all {attempts} requests of a Dom0 that reads nothing");
        }

        Assert.False(host.HasExited);
        using var good = XenGnttabTests.ConnectWhenFree(host);
        Assert.Equal((4L << 16) | 17, new Privcmd(good).Hypercall(HypercallNumber.XenVersion));
    }

    private static async Task<uint> Next(XenEvtchn evtchn, int milliseconds = 20000)
    {
        using var timeout = new CancellationTokenSource(milliseconds);
        return await evtchn.PendingAsync(timeout.Token);
    }

    private static byte[] Header(ushort type, uint length)
    {
        var h = new byte[HypervisorChannel.HeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(h, HypervisorChannel.Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), HypervisorChannel.Version);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(16), length);
        return h;
    }
}
