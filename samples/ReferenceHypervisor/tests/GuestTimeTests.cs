using CsCheck;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>The pvclock scale (Xen's <c>set_time_scale</c>) for the 1 GHz TSC and for any frequency.</summary>
public class GuestTimeTests
{
    [Fact]
    public void A_one_gigahertz_tsc_scales_with_multiplier_two_to_the_31_and_shift_one()
    {
        Assert.Equal(1_000_000_000ul, GuestTime.TscFrequencyHz);
        Assert.Equal((0x8000_0000u, (sbyte)1), GuestTime.TimeScale(GuestTime.TscFrequencyHz));
        Assert.Equal(0x8000_0000u, GuestTime.TscToSystemMul);
        Assert.Equal(1, GuestTime.TscShift);
        Assert.Equal(123_456_789_012ul, GuestTime.ToNanoseconds(123_456_789_012));
    }

    [Fact]
    public void Any_frequency_gives_a_normalised_multiplier_and_one_second_per_second()
    {
        Gen.ULong[1_000_000, 100_000_000_000].Sample(hz =>
        {
            var (mul, shift) = GuestTime.TimeScale(hz);
            Assert.True(mul >= 0x8000_0000u, $"{hz} Hz: mul {mul:x}");
            ulong ticks = shift >= 0 ? hz << shift : hz >> -shift;
            double ns = (double)ticks * mul / 4294967296.0;
            Assert.True(Math.Abs(ns - 1e9) <= 1e9 * 2e-9 + 2, $"{hz} Hz: one second of ticks is {ns} ns (mul {mul:x}, shift {shift})");
        });
    }
}
