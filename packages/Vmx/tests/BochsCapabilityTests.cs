namespace VmmKit.Vmx.Tests;

/// <summary>The stub RDMSRs the VMX capability MSRs under Bochs; VmxCapabilities must reproduce and honour them.</summary>
public class BochsCapabilityTests
{
    [Theory]
    [InlineData(BochsHarness.Haswell)]
    [InlineData(BochsHarness.Skylake)]
    public void Capability_msrs_round_trip_and_adjustment_respects_them(string cpuModel)
    {
        var msrs = BochsHarness.CapabilityDump(cpuModel).Msrs;
        for (uint i = VmxCapabilityMsr.Ia32VmxBasic; i <= VmxCapabilityMsr.Ia32VmxEptVpidCap; i++)
            Assert.True(msrs.ContainsKey(i), $"{cpuModel}: MSR 0x{i:x} missing");

        var caps = VmxCapabilities.FromMsrs(msrs);
        Assert.Equal(msrs.OrderBy(p => p.Key), caps.ToMsrs().OrderBy(p => p.Key));
        Assert.Equal((uint)msrs[VmxCapabilityMsr.Ia32VmxBasic] & 0x7FFF_FFFF, caps.Basic.RevisionIdentifier);

        // Adjusting nothing yields exactly the must-be-one bits; adjusting everything allowed yields exactly the may-be-one bits.
        foreach (var (cap, name) in new[] { (caps.PinBased, "pin"), (caps.PrimaryProcessorBased, "primary"), (caps.SecondaryProcessorBased, "secondary"), (caps.VmExit, "exit"), (caps.VmEntry, "entry") })
        {
            Assert.True(cap.TryAdjust(0, 0, out uint min, out _), name);
            Assert.Equal(cap.MustBeOne, min);
            Assert.True(cap.TryAdjust(cap.MayBeOne, 0, out uint max, out _), name);
            Assert.Equal(cap.MayBeOne, max);
            Assert.True(cap.Allows(min) && cap.Allows(max), name);
            uint forbidden = ~cap.MayBeOne;
            if (forbidden != 0)
            {
                Assert.False(cap.TryAdjust(forbidden, 0, out _, out uint bad), name);
                Assert.Equal(forbidden, bad);
            }
        }
        // TRUE controls: the TRUE MSRs must only relax the default-1 bits of the legacy ones (Appendix A.2).
        if (caps.Basic.TrueControls)
        {
            var legacy = new VmxControlCapability(msrs[VmxCapabilityMsr.Ia32VmxProcbasedCtls]);
            Assert.Equal(0u, caps.PrimaryProcessorBased.MustBeOne & ~legacy.MustBeOne);
            Assert.Equal(legacy.MayBeOne, caps.PrimaryProcessorBased.MayBeOne);
        }
        // What the PVH setup needs is there on both models.
        Assert.NotEqual(0u, caps.SecondaryProcessorBased.MayBeOne & (uint)SecondaryProcessorBasedControls.UnrestrictedGuest);
        Assert.True(caps.EptVpid.PageWalkLength4 && caps.EptVpid.WriteBackType);
        Assert.Equal(VmcsBuilder.Cr0Pe | VmcsBuilder.Cr0Ne | VmcsBuilder.Cr0Pg, caps.Cr0Fixed0);
    }
}
