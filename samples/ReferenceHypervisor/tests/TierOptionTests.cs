namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary><c>vmmkit-hv --tier</c>: every tier boots the demo guest to the same console output; lock-step reports its check.</summary>
public class TierOptionTests
{
    [Theory]
    [InlineData("interpreter")]
    [InlineData("translator")]
    [InlineData("lockstep")]
    public void Every_tier_boots_the_demo_guest_alike(string tier)
    {
        var (code, stdout, stderr) = GuestBootTests.RunCli("--tier", tier);
        var (refCode, refStdout, _) = GuestBootTests.RunCli();
        Assert.Equal(refCode, code);
        Assert.Equal(refStdout, stdout);
        if (tier == "lockstep")
            Assert.Contains("translated block runs checked, no mismatch", stderr);
        else
            Assert.DoesNotContain("lock-step", stderr);
    }

    [Fact]
    public void An_unknown_tier_is_a_usage_error()
    {
        var (code, _, stderr) = GuestBootTests.RunCli("--tier", "jit");
        Assert.NotEqual(0, code);
        Assert.Contains("interpreter", stderr);
        Assert.DoesNotContain("Unhandled exception", stderr);
    }
}
