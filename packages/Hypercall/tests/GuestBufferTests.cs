using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

public unsafe class GuestBufferTests
{
    // XENVER_get_features-like: read a xen_feature_info, fill submap, write it back.
    private static long GetFeatures(ref HypercallCall<TestVcpu> call)
    {
        ulong gva = call.Argument(1);
        if (!call.TryCopyFromGuest(gva, out XenFeatureInfo info))
            return XenErrno.EFAULT.Negated();
        if (info.SubmapIdx != 0)
            return XenErrno.EINVAL.Negated();
        info.Submap = 1u << (int)XenFeature.AutoTranslatedPhysmap;
        return call.TryCopyToGuest(gva, in info) ? 0 : XenErrno.EFAULT.Negated();
    }

    private static long Version(ref HypercallCall<TestVcpu> call)
    {
        Span<byte> buffer = stackalloc byte[(int)call.Argument(2)];
        return call.TryCopyFromGuest(call.Argument(1), buffer) ? 0 : XenErrno.EFAULT.Negated();
    }

    private static long Dispatch(ulong arg1, GuestX86Mode mode = GuestX86Mode.Long64, ulong len = 8, FlatGuestMemory? m = null)
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.GetFeatures, &GetFeatures);
        d.RegisterSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Version, &Version);
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.XenVersion };
        ulong cmd = len == 8 ? (ulong)XenVersionCommand.GetFeatures : (ulong)XenVersionCommand.Version;
        if (mode == GuestX86Mode.Long64) { regs.Rdi = cmd; regs.Rsi = arg1; regs.Rdx = len; }
        else { regs.Rbx = cmd; regs.Rcx = arg1; regs.Rdx = len; }
        d.Dispatch(new TestVcpu(1), ref regs, mode, 0, m ?? new FlatGuestMemory(0x1000, 0x1000));
        return mode == GuestX86Mode.Long64 ? (long)regs.Rax : (int)(uint)regs.Rax;
    }

    [Fact]
    public void Good_pointer_round_trips_a_struct()
    {
        var m = new FlatGuestMemory(0x1000, 0x1000);
        Assert.Equal(0, Dispatch(0x1800, m: m));
        Assert.Equal(4u, BitConverter.ToUInt32(m.At(0x1804, 4)));
    }

    [Theory]
    [InlineData(0UL)]                 // NULL
    [InlineData(0xFFFUL)]             // just below guest memory
    [InlineData(0x1FFCUL)]            // straddles the end
    [InlineData(0xFFFF_FFFF_FFFF_FFFCUL)] // wraps around 2^64
    [InlineData(0x8000_0000_0000_1000UL)] // non-canonical
    public void Bad_pointer_is_efault_never_a_host_exception(ulong gva)
    {
        Assert.Equal(-14, Dispatch(gva));
    }

    [Fact]
    public void Compat_caller_range_ending_past_4GiB_is_efault_without_asking_the_memory()
    {
        var m = new FlatGuestMemory(0x1000, 0x1000);
        Assert.Equal(-14, Dispatch(0xFFFF_FFF0, GuestX86Mode.Protected32, len: 0x20, m: m));
        Assert.Equal(0, m.Reads);
        Assert.Equal(0, Dispatch(0x1000, GuestX86Mode.Protected32, len: 0x1000, m: m));
    }

    [Fact]
    public void Guest_handle_arithmetic_wraps_like_guest_pointers()
    {
        var h = new GuestHandle(0x1000);
        Assert.Equal(0x1000UL + 3 * 20, h.Add(3, 20).Address);
        Assert.True(new GuestHandle(0).IsNull);
        Assert.Equal(4UL, new GuestHandle(ulong.MaxValue - 3).Add(1, 8).Address);
    }

    [Fact]
    public void Xen_strings_are_truncated_and_nul_terminated()
    {
        XenExtraversion extra = default;
        Assert.Equal(15, XenString.Write(extra, "-vmmkit-0123456789"));
        Assert.Equal(0, extra[15]);
        Assert.Equal("-vmmkit-0123456", XenString.Read(extra));
        Assert.Equal(".0", XenString.Read(".0\0garbage"u8));
    }
}
