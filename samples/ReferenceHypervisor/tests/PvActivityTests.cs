using VmmKit.ReferenceHypervisor.Pv;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The scheduler's wait for the in-process Dom0 services (src/Pv/PvActivity.cs) when every vCPU is blocked: a service's
/// notification is never lost and never waited for, whether it lands before or during the wait.
/// </summary>
public class PvActivityTests
{
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(50), Limit = TimeSpan.FromSeconds(30);

    [Fact]
    public void A_notification_sent_after_the_scheduler_looked_ends_the_wait_at_once()
    {
        // Regression: the wait used to drain the signal of a notification that landed between the scheduler's look at
        // the vCPUs and the wait, then wait out the busy service (up to the limit) with a woken vCPU ready to run.
        var activity = new PvActivity();
        activity.Started();                      // a service took an event and is still busy with it
        long seen = activity.Answers;            // the scheduler starts its round
        activity.Answered();                     // the service notifies a guest meanwhile, on its own thread
        Assert.True(activity.WaitForServices(seen, Quiet, Limit));
    }

    [Fact]
    public async Task A_notification_sent_during_the_wait_ends_it()
    {
        var activity = new PvActivity();
        activity.Started();
        long seen = activity.Answers;
        var answer = Task.Run(async () =>
        {
            await Task.Delay(20);
            activity.Answered();
        });
        Assert.True(activity.WaitForServices(seen, Quiet, Limit));
        await answer;
    }

    [Fact]
    public async Task A_service_busy_longer_than_the_idle_limit_is_still_waited_for()
    {
        // Regression (LinuxBootTests under load): the wait gave up after its limit while the block backend was still
        // serving a request, the scheduler skipped guest time to the next deadline, and Linux saw its disk request take
        // over 120 s ("task blocked for more than 120 seconds"). Work a service holds is waited for, however long.
        var activity = new PvActivity();
        activity.Started();
        long seen = activity.Answers;
        var answer = Task.Run(async () =>
        {
            await Task.Delay(1500);
            activity.Answered();
            activity.Finished();
        });
        Assert.True(activity.WaitForServices(seen, Quiet, TimeSpan.FromSeconds(1)));
        await answer;
    }

    [Fact]
    public async Task An_event_delivered_to_a_service_that_has_not_taken_it_yet_is_waited_for()
    {
        // The event reaches Dom0 on the guest's thread; the service's task may run much later on a loaded host. Until its
        // port is unmasked the event is work in hand, not idleness.
        int inHand = 1;
        var activity = new PvActivity(() => Volatile.Read(ref inHand) > 0);
        Thread.Sleep(60);                        // past the quiet period: only the event in hand says "busy"
        long seen = activity.Answers;
        var answer = Task.Run(async () =>
        {
            await Task.Delay(1500);
            activity.Started();
            activity.Answered();
            Volatile.Write(ref inHand, 0);
            activity.Finished();
        });
        Assert.True(activity.WaitForServices(seen, Quiet, TimeSpan.FromSeconds(1)));
        await answer;
        Thread.Sleep(60);
        Assert.False(activity.WaitForServices(activity.Answers, Quiet, Limit));
    }

    [Fact]
    public void Idle_services_with_nothing_answered_do_not_hold_the_scheduler()
    {
        var activity = new PvActivity();
        activity.Answered();                     // answered before the round: already seen by the scheduler
        long seen = activity.Answers;
        activity.Started();
        activity.Finished();
        // Still within the quiet period after the last activity: waits it out (bounded by the limit given), then false.
        Assert.False(activity.WaitForServices(seen, Quiet, TimeSpan.FromMilliseconds(200)));
        // Quiet and idle: false at once.
        Thread.Sleep(60);
        Assert.False(activity.WaitForServices(seen, Quiet, Limit));
    }
}
