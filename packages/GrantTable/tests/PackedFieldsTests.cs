using VmmKit.Ept;
using Xunit;

namespace VmmKit.GrantTable.Tests;

// The claim path writes several fields of an active entry and of a copy buffer with one store each; what the other
// paths read field by field must be what those stores meant.
public sealed class PackedFieldsTests
{
    [Theory]
    [InlineData(ActiveGrantEntry.HostReadIncrement, (ushort)3, 0x1234UL)]
    [InlineData(ActiveGrantEntry.HostWriteIncrement, (ushort)0x7FEF, 0xF_FFFF_FFFFUL)]
    public void PinWholePage_sets_every_field_of_a_whole_page_pin(uint pin, ushort domId, ulong mfn)
    {
        var act = new ActiveGrantEntry { Pin = 0xDEAD, DomId = 9, Start = 100, Length = 7, IsSubPage = true, Mfn = 1 };

        act.PinWholePage(pin, domId, mfn);

        Assert.Equal(pin, act.Pin);
        Assert.Equal(domId, act.DomId);
        Assert.Equal(0, act.Start);
        Assert.Equal(Page.PageSize, act.Length);
        Assert.False(act.IsSubPage);
        Assert.Equal(mfn, act.Mfn);
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(false, false)]
    public void WholePage_window_sets_bounds_and_flags(bool haveGrant, bool readOnly)
    {
        var buf = new GrantTableHost.CopyBuffer { Start = 8, Length = 16, End = 24, HaveGrant = !haveGrant, ReadOnly = !readOnly, Ref = 77, DomId = 5 };

        buf.Window = GrantTableHost.CopyBuffer.WholePage(haveGrant, readOnly);

        Assert.Equal(0, buf.Start);
        Assert.Equal(Page.PageSize, buf.Length);
        Assert.Equal(Page.PageSize, buf.End);
        Assert.Equal(haveGrant, buf.HaveGrant);
        Assert.Equal(readOnly, buf.ReadOnly);
        Assert.Equal(77u, buf.Ref);     // the fields around the window are left alone
        Assert.Equal(5, buf.DomId);
    }
}
