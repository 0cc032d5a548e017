namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// samples/guests/blkfront through the quick path (<c>vmmkit-hv boot blkfront.elf --disk IMG</c>): the C frontend does
/// the xenbus handshake over its XenStore ring with the in-process xenstored and blkback, writes a pattern with one
/// 8-segment request, flushes, reads it back, gets an error for a read past the end, and closes the device. The test
/// then checks the pattern on the image file from the host.
/// </summary>
public class BlkfrontGuestTests
{
    [Fact]
    public void The_c_blkfront_writes_its_disk_through_blkback_and_the_host_sees_the_data()
    {
        string image = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"vmmkit-blkfront-{Guid.NewGuid():N}.img");
        using (var f = File.Create(image))
            f.SetLength(4 << 20);
        try
        {
            var (code, stdout, stderr) = GuestBootTests.RunCli("boot", GuestBuild.Path("blkfront.elf"), "--disk", image, "--max-instructions", "2000000000");
            Assert.True(code == 0, $"exit {code}\n{stderr}\n{stdout}");
            string[] expected =
            [
                "blkfront: hello on the console ring\n", "map grant table: 0\n", "name: blkfront.elf\n", "vbd: 51712\n", "read backend: 0\n",
                "backend InitWait: 0\n", "sectors: 8192\n", "read feature-flush-cache: 0\n", "write state Initialised: 0\n", "backend Connected: 0\n",
                "write 8 pages: 0\n", "flush: 0\n", "read 8 pages: 0\n", "read back matches: 1\n", "read past the end: -1\n",
                "backend Closing: 0\n", "backend Closed: 0\n", "blkfront done\n", "blkfront: done\n",
            ];
            foreach (string line in expected)
                Assert.True(stdout.Contains(line, StringComparison.Ordinal), $"missing \"{line.TrimEnd()}\" in:\n{stdout}");

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
        finally
        {
            File.Delete(image);
        }
    }
}
