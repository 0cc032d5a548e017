namespace VmmKit.Dom0.Tests;

/// <summary>
/// <c>disk=['format=raw,vdev=xvda,access=rw,target=PATH']</c> hands the image to VmmKit.Backends' block backend in the
/// Dom0 process: the blkfront C guest, created by <c>vmmkit-xl</c>, finds its vbd in XenStore, connects, writes its
/// pattern, reads it back and closes; the host then checks the image.
/// </summary>
public sealed class BlockBackendTests
{
    [Fact]
    public void The_blkfront_guest_writes_its_pattern_through_Dom0s_block_backend()
    {
        using var host = XlTests.StartHostWithDom0();
        string image = Path.Combine(host.RunDirectory, "disk.img");
        using (var f = File.Create(image))
            f.SetLength(4 << 20);
        string cfg = XlTests.WriteConfig(host, "blk", "blkfront.elf", "disk = [ 'format=raw,vdev=xvda,access=rw,target=disk.img' ]");
        var (code, _, stderr) = XlTests.Xl(host, null, "create", cfg);
        Assert.True(code == 0, $"{stderr}\n{host.Log}");

        XlTests.WaitForConsoleOrLog(host, "blkfront done\n");
        foreach (string line in (string[])["name: blk\n", "vbd: 51712\n", "backend InitWait: 0\n", "sectors: 8192\n", "backend Connected: 0\n",
                     "write 8 pages: 0\n", "flush: 0\n", "read 8 pages: 0\n", "read back matches: 1\n", "read past the end: -1\n",
                     "backend Closing: 0\n", "backend Closed: 0\n"])
            Assert.True(host.Log.Contains(line, StringComparison.Ordinal), $"missing \"{line.TrimEnd()}\" in:\n{host.Log}");
        (code, _, stderr) = XlTests.Xl(host, null, "destroy", "blk");
        Assert.True(code == 0, stderr);

        // The pattern on the image: byte i of sector s (128 <= s < 192) is (s * 31 + i * 7 + 1) & 0xff; the rest is zero.
        byte[] disk = File.ReadAllBytes(image);
        for (int s = 0; s < disk.Length / 512; s++)
        {
            for (int i = 0; i < 512; i++)
            {
                byte want = s is >= 128 and < 192 ? (byte)((s * 31) + (i * 7) + 1) : (byte)0;
                if (disk[(s * 512) + i] != want)
                    Assert.Fail($"sector {s} byte {i}: {disk[(s * 512) + i]}, expected {want}");
            }
        }
    }

    [Fact]
    public void A_disk_entry_xl_cannot_serve_is_refused_with_a_reason()
    {
        using var host = XlTests.StartHostWithDom0();
        string cfg = XlTests.WriteConfig(host, "blk", "blkfront.elf", "disk = [ 'format=qcow2,vdev=xvda,access=rw,target=disk.img' ]");
        var (code, _, stderr) = XlTests.Xl(host, null, "create", cfg);
        Assert.Equal(1, code);
        Assert.Contains("only format=raw", stderr);
    }
}
