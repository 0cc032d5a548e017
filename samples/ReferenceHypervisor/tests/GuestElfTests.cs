using VmmKit.Boot;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>The gcc-built guests are PVH kernels VmmKit.Boot accepts (the loader's own tests are in packages/Boot/tests).</summary>
public class GuestElfTests
{
    [Theory]
    [InlineData("hello.elf")]
    [InlineData("xen_version.elf")]
    [InlineData("misbehave.elf")]
    [InlineData("workload.elf")]
    public void Parses_the_gcc_built_guests(string guest)
    {
        var elf = File.ReadAllBytes(GuestBuild.Path(guest));
        Assert.True(ElfImage.TryParse(elf, out var image, out string error), error);
        Assert.Equal(0x100000u, image!.Phys32Entry);
        Assert.False(image.Is64Bit);
    }
}
