using System.Runtime.InteropServices;
using VmmKit.Backends.Block;
using VmmKit.Backends.Rings;
using VmmKit.Ept;
using VmmKit.GrantTable;

namespace VmmKit.Backends.Tests;

/// <summary>The README's example, kept compiling, and its printed output compared with the README's output block.</summary>
public class ReadmeExampleTests
{
    // --- README example begins (keep in sync with packages/Backends/README.md) ---
    private static void Example(TextWriter output)
    {
        // Machine memory, grant tables, and two domains: d0 runs the backend, d1 (the frontend) has 4 pages of RAM.
        using var memory = new MachineMemory(16UL << 20);
        var grants = new GrantTableHost(new FrameReferences(memory));
        GrantDomain backend = grants.CreateDomain(0, new EptTables(memory, new FrameOwner(0)));
        var ept1 = new EptTables(memory, new FrameOwner(1));
        var ram = new MachineFrameNumber[4];
        for (int i = 0; i < ram.Length; i++)
        {
            ram[i] = memory.AllocateFrame(new FrameOwner(1));
            ept1.Map(new GuestFrameNumber((ulong)i).Address, ram[i], 1, EptAccess.ReadWriteExecute);
        }
        GrantDomain frontend = grants.CreateDomain(1, ept1);

        // The frontend grants its ring (frame 0) and a data page (frame 1) to d0, and queues a write of 8 sectors at sector 16.
        IGrantShare share = new InProcessGrantShare(grants, frontend);
        share.TryGrantForeignAccess(0, frame: 0, readOnly: false, out uint ringRef);
        share.TryGrantForeignAccess(0, frame: 1, readOnly: false, out uint dataRef);
        memory.GetFrame(ram[1]).Fill((byte)'x');
        var request = new BlkifRequest { Operation = (byte)BlkifOperation.Write, NrSegments = 1, Id = 42, SectorNumber = 16 };
        request.Seg[0] = new BlkifRequestSegment { Gref = dataRef, FirstSect = 0, LastSect = 7 };
        Span<byte> ring = memory.GetFrame(ram[0]);
        MemoryMarshal.Write(ring[SharedRing.EntriesOffset..], request);
        var indexes = MemoryMarshal.Cast<byte, uint>(ring);
        (indexes[1], indexes[3]) = (1, 1); // SHARED_RING_INIT: req_event = rsp_event = 1
        indexes[0] = 1;                    // req_prod: one request

        // The backend maps the ring and serves it over a raw image file.
        string path = Path.GetTempFileName();
        File.WriteAllBytes(path, new byte[1 << 20]);
        var mapper = new InProcessGrantMapper(grants, backend, new GuestFrameNumber(0x1000), windowFrames: 16);
        GrantedPages.TryMap(mapper, 1, [ringRef], readOnly: false, out GrantedPages? pages);
        using (var disk = new RawImageStorage(path))
        using (var server = new BlkifRingServer(mapper, 1, pages!, BlkifProtocol.X86_64, disk, maxIndirectSegments: 0))
        {
            bool notify = server.Process();
            var response = MemoryMarshal.Read<BlkifResponse>(ring[SharedRing.EntriesOffset..]);
            output.WriteLine($"ring of {server.RingSize}, response id {response.Id}: {(BlkifStatus)response.Status}, notify {notify}");
        }
        byte[] image = File.ReadAllBytes(path);
        output.WriteLine($"sector 16 on the image: \"{System.Text.Encoding.ASCII.GetString(image, 16 * 512, 8)}\"");
        File.Delete(path);
    }
    // --- README example ends ---

    [Fact]
    public void The_readme_example_prints_what_the_readme_says()
    {
        var output = new StringWriter();
        Example(output);
        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        int start = readme.IndexOf("```text\n", StringComparison.Ordinal) + "```text\n".Length;
        string expected = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        Assert.Equal(expected, output.ToString().Replace("\r", ""));
    }
}
