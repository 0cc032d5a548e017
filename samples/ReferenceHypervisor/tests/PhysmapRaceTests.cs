using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// XENMEM_remove_from_physmap and XENMEM_add_to_physmap made by two vCPUs of one domain at once, as the threaded
/// scheduler runs them (each vCPU's hypercalls on its own host thread). Xen changes a domain's physmap under its p2m lock
/// (xen/arch/x86/mm/p2m.c): of two removals of one page, one removes it and the other finds nothing (-ENOENT), and the
/// page is freed once.
/// </summary>
public sealed class PhysmapRaceTests : IDisposable
{
    private const int Pages = 1024;
    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly Domain _guest;

    public PhysmapRaceTests()
    {
        var dom0 = new Domain(_machine, 0, "d0", 1, privileged: true, upcall: null);
        _machine.AddDomain(dom0);
        _guest = new Domain(_machine, 1, "d1", 2, privileged: false, upcall: null);
        _machine.AddDomain(_guest);
        _guest.SetMaxPages(Pages + 16);
        for (ulong gfn = 0; gfn < Pages; gfn++)
            Assert.Equal(0, _guest.Populate(gfn));
        Assert.Equal(0, _guest.InitialiseBootVcpu(0x1000, 0));
        Assert.Equal(2, _guest.Vcpus.Count);
    }

    public void Dispose() => _machine.Dispose();

    private long Remove(int vcpu, GuestPage page, ulong gpfn)
    {
        MemoryMarshal.Write(page.Bytes, new XenRemoveFromPhysmap { Domid = DomainId.Self, Gpfn = gpfn });
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.MemoryOp, Rdi = XenRemoveFromPhysmap.SubOp, Rsi = 0 };
        _machine.Hypercalls.Dispatch(_guest.Vcpus[vcpu], ref regs, GuestX86Mode.Long64, 0, page);
        return (long)regs.Rax;
    }

    [Fact]
    public void Two_vcpus_removing_the_same_pages_at_once_remove_each_once_and_free_it_once()
    {
        ulong freeBefore = _machine.Memory.FreeFrames;
        var results = new long[2, Pages];
        var errors = new Exception?[2];
        int ready = 0;
        var threads = new Thread[2];
        for (int t = 0; t < 2; t++)
        {
            int vcpu = t;
            threads[t] = new Thread(() =>
            {
                var page = new GuestPage();
                try
                {
                    for (int gfn = 0; gfn < Pages; gfn++)
                    {
                        // Both threads start each removal together (a spin, so neither is still waking up).
                        Interlocked.Increment(ref ready);
                        while (Volatile.Read(ref ready) < 2 * (gfn + 1))
                            Thread.SpinWait(1);
                        results[vcpu, gfn] = Remove(vcpu, page, (ulong)gfn);
                    }
                }
                catch (Exception e)
                {
                    errors[vcpu] = e;
                    Interlocked.Add(ref ready, Pages * 2);
                }
            });
            threads[t].Start();
        }

        foreach (var t in threads)
            t.Join();
        Assert.Null(errors[0]);
        Assert.Null(errors[1]);
        int both = 0;
        for (int gfn = 0; gfn < Pages; gfn++)
        {
            long a = results[0, gfn], b = results[1, gfn];
            if (a == 0 && b == 0)
                both++;
            else
                Assert.Equal(XenErrno.ENOENT.Negated(), Math.Min(a, b));   // the other one found nothing left
        }

        Assert.Equal(0, both);
        Assert.Equal(freeBefore + Pages, _machine.Memory.FreeFrames);   // every page freed, and freed once
        Assert.Equal(0ul, _guest.PopulatedPages);
    }

    [Fact]
    public void IsGrantTableFrame_answers_while_another_vcpu_switches_the_table_version()
    {
        // GNTTABOP_set_version 2 -> 1 frees the status frames (gnttab_unpopulate_status_frames) while another vCPU's
        // physmap call asks whether a page is one of the table's: the question gets an answer, never a host exception.
        var grants = _guest.Grants;
        Exception? error = null;
        bool stop = false;
        var flipper = new Thread(() =>
        {
            try
            {
                for (int i = 0; i < 4000 && !Volatile.Read(ref stop); i++)
                {
                    var op = new VmmKit.GrantTable.GnttabSetVersion { Version = (uint)(1 + (i & 1)) };
                    Assert.Equal(0, _machine.Grants.SetVersion(grants, ref op));
                }
            }
            catch (Exception e)
            {
                error = e;
            }
            finally
            {
                Volatile.Write(ref stop, true);
            }
        });
        flipper.Start();
        var shared = grants.GetSharedFrame(0);
        try
        {
            while (!Volatile.Read(ref stop))
            {
                Assert.True(_guest.IsGrantTableFrame(shared));
                Assert.False(_guest.IsGrantTableFrame(_guest.SharedInfoFrame));
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            flipper.Join();
        }

        Assert.Null(error);
    }

    [Fact]
    public void A_page_one_vcpu_removes_is_gone_at_once_from_the_guest_memory_another_vcpus_hypercall_is_using()
    {
        // vCPU 1 is in a hypercall on its own host thread (out of the guest, so it serves no flush until its next entry)
        // and has translated gfn 7 through its own accessor. vCPU 0 removes gfn 7 and the page is freed: the rest of
        // vCPU 1's hypercall must not reach the freed frame (which another domain may be given) through that translation.
        var vcpu1 = _guest.Vcpus[1];
        vcpu1.Thread = new VcpuThread(vcpu1);   // not started: another thread's vCPU, outside the guest
        var gpa = new GuestPhysicalAddress(7UL << 12);
        Span<byte> word = stackalloc byte[8];
        Assert.True(vcpu1.Physical.TryRead(gpa, word, out _));
        Assert.True(vcpu1.Physical.TryWrite(gpa, word, out _));

        Assert.Equal(0, Remove(0, new GuestPage(), 7));

        Assert.False(vcpu1.Physical.TryWrite(gpa, word, out _));
        Assert.False(vcpu1.Physical.TryRead(gpa, word, out _));
    }
}
