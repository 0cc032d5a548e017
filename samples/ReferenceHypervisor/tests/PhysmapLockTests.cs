namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// <see cref="PhysmapLock"/>: a vCPU holds its domain's physmap to read whenever it is out of the guest, so a handler
/// that changes the physmap (a writer) and a vCPU that waits for another (an INIT/SIPI sender, VCPUOP_initialise) must
/// let those reads go, or two vCPUs of one domain wait for each other forever.
/// </summary>
public sealed class PhysmapLockTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    /// <summary>Runs <paramref name="work"/> on a thread of its own (the lock belongs to threads, as vCPUs have theirs).</summary>
    private static Thread Start(Action work)
    {
        var thread = new Thread(() => work()) { IsBackground = true };
        thread.Start();
        return thread;
    }

    /// <summary>A thread that takes the lock to write, then lets it go.</summary>
    private static Thread StartWriter(PhysmapLock physmap) => Start(() =>
    {
        using (physmap.Write())
            return;
    });

    [Fact]
    public void A_reader_that_asks_to_write_gets_the_lock_and_its_reads_back_after()
    {
        var physmap = new PhysmapLock();
        using (physmap.Read())
        {
            using (physmap.Read())
            {
                using (physmap.Write())
                {
                    Assert.True(physmap.IsHeld);
                    using (physmap.Read())
                    {
                        // a writer may read, and ask to write again
                        using (physmap.Write())
                            Assert.True(physmap.IsHeld);
                    }
                }

                Assert.True(physmap.IsHeld);
            }

            Assert.True(physmap.IsHeld);
        }

        Assert.False(physmap.IsHeld);
    }

    [Fact]
    public void A_writer_waits_for_a_reader_and_gets_the_lock_when_the_reader_lets_go()
    {
        var physmap = new PhysmapLock();
        Thread writer;
        using (physmap.Read())
        {
            writer = StartWriter(physmap);
            Assert.False(writer.Join(TimeSpan.FromMilliseconds(200)), "the writer got the lock while a reader held it");
        }

        Assert.True(writer.Join(Limit));
    }

    [Fact]
    public void A_reader_outside_lets_a_writer_through_and_takes_its_reads_back()
    {
        // vCPU 0 (this thread) holds the lock twice, as in a grant copy, and waits for vCPU 1, which must first change the
        // physmap: the wait is outside the lock, so the change happens and the wait ends.
        var physmap = new PhysmapLock();
        Thread writer;
        using (physmap.Read())
        using (physmap.Read())
        {
            var changed = new ManualResetEventSlim();
            using (physmap.Outside())
            {
                Assert.False(physmap.IsHeld);
                var vcpu1 = Start(() =>
                {
                    using (physmap.Write())
                        changed.Set();
                });
                Assert.True(changed.Wait(Limit), "the writer waited for a reader that was waiting for it");
                Assert.True(vcpu1.Join(Limit));
            }

            Assert.True(physmap.IsHeld);
            writer = StartWriter(physmap);
            Assert.False(writer.Join(TimeSpan.FromMilliseconds(200)), "the reads were not taken back");
        }

        Assert.True(writer.Join(Limit));
    }

    [Fact]
    public void Outside_for_a_thread_that_holds_nothing_does_nothing()
    {
        var physmap = new PhysmapLock();
        using (physmap.Outside())
            Assert.False(physmap.IsHeld);
        using (physmap.Write())
            Assert.True(physmap.IsHeld);
        Assert.False(physmap.IsHeld);
    }
}
