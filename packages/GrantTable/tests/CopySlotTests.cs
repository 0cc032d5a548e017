using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The marks the exclusive lock waits for (<c>CopySlot</c>, GrantTableHost.Exclusion.cs): each thread that copies has
/// one per host, set while it holds copy words. A thread that copied on another host in between still holds the lock
/// back on this one, and threads that ended leave their slots to the next, so a host that sees many short-lived
/// threads copy keeps as many slots as threads copy at once.
/// </summary>
public sealed class CopySlotTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestMachine _other = new();

    public void Dispose()
    {
        _m.Dispose();
        _other.Dispose();
    }

    [Fact]
    public void A_copy_of_a_thread_that_copied_on_another_host_in_between_holds_the_exclusive_lock_back()
    {
        (TestDomain front, TestDomain back, uint gref) = Pair(_m);
        (TestDomain otherFront, TestDomain otherBack, uint otherRef) = Pair(_other);
        var dispatcher = new HypercallDispatcher<TestDomain>();
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(dispatcher);
        using var inHold = new ManualResetEventSlim();
        using var letGo = new ManualResetEventSlim();
        var view = new StatusWriteGate(back.Virtual, inHold, letGo);

        var copier = new Thread(() =>
        {
            CopyOnce(_other, otherBack, otherFront, otherRef);
            CopyOnce(_m, back, front, gref);
            CopyOnce(_other, otherBack, otherFront, otherRef); // the thread's last host is now the other one

            // One hypercall on this host whose status write, made within the hold, waits for the test.
            CopyHypercall.Invoke(dispatcher, back, [Op(front, gref)], view);
        });
        copier.Start();
        Assert.True(inHold.Wait(TimeSpan.FromSeconds(30)));

        // Creating a domain takes the exclusive lock: it must wait for the copy's hold.
        using var created = new ManualResetEventSlim();
        var creator = new Thread(() =>
        {
            _m.AddDomain(7);
            created.Set();
        });
        creator.Start();
        Assert.False(created.Wait(TimeSpan.FromMilliseconds(300)));
        letGo.Set();
        Assert.True(created.Wait(TimeSpan.FromSeconds(30)));
        copier.Join();
        creator.Join();
        Assert.Equal(0u, front.Grant.GetPinCount(gref));
    }

    [Fact]
    public void Threads_that_ended_leave_their_slots_to_the_next()
    {
        (TestDomain front, TestDomain back, uint gref) = Pair(_m);
        for (int i = 0; i < 20; i++)
        {
            var t = new Thread(() => CopyOnce(_m, back, front, gref));
            t.Start();
            t.Join();
        }

        Assert.Equal(1, _m.Host.CopySlotCount);
    }

    // A frontend d1 granting its page 5 to a backend d2.
    private static (TestDomain Front, TestDomain Back, uint Ref) Pair(TestMachine m)
    {
        TestDomain front = m.AddDomain(1), back = m.AddDomain(2);
        front.RamPage(5).Fill(0x5A);
        Assert.True(new InProcessGrantShare(m.Host, front.Grant).TryGrantForeignAccess(2, 5, readOnly: true, out uint gref));
        return (front, back, gref);
    }

    private static void CopyOnce(TestMachine m, TestDomain back, TestDomain front, uint gref)
    {
        GnttabCopy op = Op(front, gref);
        m.Host.Copy(back.Grant, ref op);
        Assert.Equal((short)GrantStatus.Okay, op.Status);
    }

    private static GnttabCopy Op(TestDomain front, uint gref) => new()
    {
        Source = new() { Ref = gref, DomId = front.Id },
        Dest = new() { Gmfn = 3, DomId = DomainId.Self },
        Len = 64,
        Flags = (ushort)GrantCopyFlags.SourceGref,
    };
}
