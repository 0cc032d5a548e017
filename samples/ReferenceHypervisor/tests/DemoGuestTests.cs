using VmmKit.Boot;
using VmmKit.ReferenceHypervisor.Demo;

namespace VmmKit.ReferenceHypervisor.Tests;

public class DemoGuestTests
{
    [Fact]
    public void The_demo_guest_is_a_valid_pvh_kernel()
    {
        var elf = DemoGuest.Build();
        Assert.True(ElfImage.TryParse(elf, out var image, out string error), error);
        Assert.Equal(DemoGuest.LoadAddress, image!.Phys32Entry);
        Assert.False(image.Is64Bit);
        Assert.Equal(DemoGuest.LoadAddress, image.LowestAddress);
    }
}
