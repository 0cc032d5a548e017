using VmmKit.Ept;

namespace VmmKit.GrantTable.Tests;

/// <summary><see cref="FrameReferences"/>' public counts, as a hypervisor uses them beside the grant tables.</summary>
public sealed class FrameReferencesTests : IDisposable
{
    private readonly TestMachine _m = new();

    public void Dispose() => _m.Dispose();

    [Fact]
    public void TryAcquire_takes_a_reference_only_on_a_live_frame_of_the_named_owner()
    {
        // Xen's get_page(page, d): the owner is checked and the reference taken in one step.
        MachineFrameNumber frame = _m.Memory.AllocateFrame(new FrameOwner(1));
        Assert.False(_m.Frames.TryAcquire(frame, new FrameOwner(2)));
        Assert.Equal(0, _m.Frames.ReferenceCount(frame));
        Assert.False(_m.Frames.TryAcquire(new MachineFrameNumber(_m.Memory.FrameCount + 5), new FrameOwner(1)));

        Assert.True(_m.Frames.TryAcquire(frame, new FrameOwner(1)));
        Assert.Equal(1, _m.Frames.ReferenceCount(frame));

        Assert.False(_m.Frames.Free(frame));                                 // deferred: referenced
        Assert.False(_m.Frames.TryAcquire(frame, new FrameOwner(1)));        // its free is pending
        Assert.Equal(1, _m.Frames.ReferenceCount(frame));

        _m.Frames.Release(frame);                                            // the last reference frees it
        Assert.False(_m.Memory.TryGetOwner(frame, out _));
        Assert.False(_m.Frames.TryAcquire(frame, new FrameOwner(1)));        // free
    }

    [Fact]
    public void TryAcquireMapped_references_what_the_gfn_maps_with_the_access_asked()
    {
        // Xen's get_page_from_gfn: the p2m entry looked up and its page referenced in one step.
        TestDomain d = _m.AddDomain(1);
        var ro = new GuestFrameNumber(0x100);
        MachineFrameNumber page = _m.Memory.AllocateFrame(new FrameOwner(1));
        d.Ept.Map(ro.Address, page, 1, EptAccess.Read);

        Assert.True(_m.Frames.TryAcquireMapped(d.Ept, new GuestFrameNumber(3), EptAccess.Read | EptAccess.Write, out MachineFrameNumber ram));
        Assert.Equal(d.Ram[3], ram);
        Assert.Equal(1, _m.Frames.ReferenceCount(ram));
        _m.Frames.Release(ram);

        Assert.False(_m.Frames.TryAcquireMapped(d.Ept, ro, EptAccess.Write, out _));          // read-only there
        Assert.True(_m.Frames.TryAcquireMapped(d.Ept, ro, EptAccess.Read, out MachineFrameNumber got));
        Assert.Equal(page, got);
        _m.Frames.Release(got);
        Assert.False(_m.Frames.TryAcquireMapped(d.Ept, new GuestFrameNumber(0x200), EptAccess.Read, out _)); // not mapped
        Assert.False(_m.Frames.TryAcquireMapped(d.Ept, new GuestFrameNumber(1UL << 50), EptAccess.Read, out _));
        d.Ept.Dispose();
        Assert.False(_m.Frames.TryAcquireMapped(d.Ept, new GuestFrameNumber(3), EptAccess.Read, out _)); // EPT gone
    }

    [Fact]
    public void TryAcquireMapped_never_references_a_frame_freed_after_its_lookup_and_given_to_another_domain()
    {
        // One vCPU registers something at a gfn (VCPUOP_register_vcpu_info) while another releases that gfn's page
        // (decrease_reservation: out of the EPT, then freed), and a second domain is handed the same frame at once.
        // A lookup and a reference taken in two steps could reference the second domain's page. Two acquiring threads
        // and the churn on two processors: an acquirer is preempted between its steps now and then.
        TestDomain a = _m.AddDomain(1);
        var gfn = new GuestFrameNumber(TestMachine.RamFrames - 1);   // among RAM, so its EPT table stays
        a.Ept.Unmap(gfn.Address, 1);
        _m.Frames.Free(a.Ram[TestMachine.RamFrames - 1]);
        var ownerA = new FrameOwner(1);
        var ownerB = new FrameOwner(2);
        var errors = new Exception?[3];
        bool stop = false;
        int taken = 0;
        var threads = new Thread[3];
        threads[0] = new Thread(() =>
        {
            try
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                while (clock.ElapsedMilliseconds < 1000 && !Volatile.Read(ref stop))
                {
                    MachineFrameNumber f = _m.Memory.AllocateFrame(ownerA);
                    a.Ept.Map(gfn.Address, f, 1, EptAccess.Read | EptAccess.Write);
                    Thread.SpinWait(50);
                    a.Ept.Unmap(gfn.Address, 1);
                    _m.Frames.Free(f);
                    MachineFrameNumber b = _m.Memory.AllocateFrame(ownerB); // most often the frame just freed
                    Thread.SpinWait(50);
                    _m.Frames.Free(b);
                }
            }
            catch (Exception e)
            {
                errors[0] = e;
            }
            finally
            {
                Volatile.Write(ref stop, true);
            }
        });
        for (int t = 1; t < 3; t++)
        {
            int index = t;
            threads[t] = new Thread(() =>
            {
                try
                {
                    while (!Volatile.Read(ref stop))
                    {
                        if (_m.Frames.TryAcquireMapped(a.Ept, gfn, EptAccess.Write, out MachineFrameNumber f))
                        {
                            Interlocked.Increment(ref taken);
                            Assert.True(_m.Memory.TryGetOwner(f, out FrameOwner owner)); // a reference keeps the owner
                            Assert.Equal(ownerA, owner);
                            _m.Frames.Release(f);
                        }
                    }
                }
                catch (Exception e)
                {
                    errors[index] = e;
                    Volatile.Write(ref stop, true);
                }
            });
        }

        foreach (Thread t in threads)
        {
            t.Start();
        }

        foreach (Thread t in threads)
        {
            t.Join();
        }

        Assert.Equal([null, null, null], errors);
        Assert.True(taken > 0);
    }
}
