namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>The one rule both schedulers use to bound how long Dom0's held work stops guest time (src/Core/HeldWorkBound.cs).</summary>
public class HeldWorkBoundTests
{
    [Fact]
    public void The_bound_runs_from_the_start_of_continuous_holding_and_restarts_after_a_pause()
    {
        var bound = new HeldWorkBound();
        long limit = (long)HeldWorkBound.Limit.TotalMilliseconds;

        Assert.Equal(0, bound.Observe(held: false, now: 500));
        Assert.Equal(1_000 + limit, bound.Observe(held: true, now: 1_000));
        Assert.Equal(1_000 + limit, bound.Observe(held: true, now: 30_000));   // still the same holding
        Assert.Equal(0, bound.Observe(held: false, now: 40_000));
        Assert.Equal(50_000 + limit, bound.Observe(held: true, now: 50_000));  // a new holding, a new bound
    }
}
