namespace VmmKit.Vmx.Tests;

public class CapabilityTests
{
    // A Haswell-like set of capability MSRs (TRUE controls available).
    internal static VmxCapabilities Sample() => VmxCapabilities.FromMsrs(new Dictionary<uint, ulong>
    {
        [0x480] = 0x00DA_0400_0000_0001,
        [0x481] = 0x0000_00FF_0000_0016,
        [0x482] = 0xFFF9_FFFE_0401_E172,
        [0x483] = 0x01FF_FFFF_0003_6DFF,
        [0x484] = 0x0003_FFFF_0000_11FF,
        [0x485] = 0x0000_0000_0000_01E5,
        [0x486] = 0x8000_0021,
        [0x487] = 0xFFFF_FFFF,
        [0x488] = 0x2000,
        [0x489] = 0x0037_67FF,
        [0x48B] = 0x0000_30FF_0000_0000,
        [0x48C] = 0x0000_0F01_0631_4141,
        [0x48D] = 0x0000_00FF_0000_0016,
        [0x48E] = 0xFFF9_FFFE_0400_6172,
        [0x48F] = 0x01FF_FFFF_0003_6DFB,
        [0x490] = 0x0003_FFFF_0000_11FB,
    });

    [Fact]
    public void Adjust_sets_default1_bits_and_keeps_desired_ones()
    {
        var caps = Sample();
        var pin = caps.Adjust(PinBasedControls.ExternalInterruptExiting);
        Assert.Equal(0x17u, (uint)pin); // bits 1, 2, 4 are default-1 (Appendix A.3.1)
        var primary = caps.Adjust(PrimaryProcessorBasedControls.HltExiting);
        Assert.True(primary.HasFlag(PrimaryProcessorBasedControls.HltExiting));
        Assert.True(caps.PrimaryProcessorBased.Allows((uint)primary));
    }

    [Fact]
    public void Adjust_fails_naming_the_unsatisfiable_bits()
    {
        var caps = Sample();
        var ex = Assert.Throws<VmxCapabilityException>(() => caps.Adjust(SecondaryProcessorBasedControls.EnableEpt | SecondaryProcessorBasedControls.EnablePml));
        Assert.Equal((uint)SecondaryProcessorBasedControls.EnablePml, ex.UnsatisfiableBits);
        Assert.Contains("EnablePml", ex.Message);
        // A default-1 control the caller needs clear: bit 1 of the pin-based controls is must-be-one.
        Assert.False(caps.PinBased.TryAdjust(0, 1u << 1, out _, out uint bad));
        Assert.Equal(2u, bad);
    }

    [Fact]
    public void True_controls_are_used_when_basic_bit_55_is_set()
    {
        var caps = Sample();
        Assert.True(caps.Basic.TrueControls);
        Assert.Equal(0x0400_6172u, caps.PrimaryProcessorBased.MustBeOne);
        Assert.Equal(0x11FBu, caps.VmEntry.MustBeOne);
    }

    [Fact]
    public void Msr_values_round_trip()
    {
        var caps = Sample();
        var again = VmxCapabilities.FromMsrs(caps.ToMsrs());
        Assert.Equal(caps.ToMsrs(), again.ToMsrs());
        Assert.False(caps.TryGetMsr(VmxCapabilityMsr.Ia32VmxVmfunc, out _));
    }

    [Fact]
    public void Cr_fixed_bits()
    {
        var caps = Sample();
        Assert.Equal(0x8000_0031ul, caps.AdjustCr0(0x11));
        Assert.Equal(0x31ul, caps.AdjustCr0(0x31, unrestrictedGuest: true));
        Assert.Equal(0x30ul, caps.AdjustCr0(0x30, unrestrictedGuest: true));
        Assert.Equal(0x2020ul, caps.AdjustCr4(0x20));
    }
}
