using System.Text;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>The README's example, kept compiling, and its printed output compared with the README's "Output" block.</summary>
public class ReadmeExampleTests
{
    // --- README example begins (keep in sync with packages/GrantTable/README.md) ---
    private static void Example(TextWriter output)
    {
        using var memory = new MachineMemory(16UL << 20);
        var host = new GrantTableHost(new FrameReferences(memory));

        // Two domains, d0 (backend) and d1 (frontend), each with one page of RAM at guest frame 0.
        GrantDomain NewDomain(ushort id)
        {
            var ept = new EptTables(memory, new FrameOwner(id));
            ept.Map(new GuestPhysicalAddress(0), memory.AllocateFrame(new FrameOwner(id)), 1, EptAccess.ReadWriteExecute);
            return host.CreateDomain(id, ept);
        }

        GrantDomain backend = NewDomain(0), frontend = NewDomain(1);

        // The frontend writes a request into its page and grants the page to the backend.
        new GuestPhysicalMemory(memory, frontend.Ept.Pointer).TryWrite(new GuestPhysicalAddress(0), "ping from d1"u8, out _);
        IGrantShare share = new InProcessGrantShare(host, frontend);
        share.TryGrantForeignAccess(domainId: 0, frame: 0, readOnly: false, out uint gref);
        output.WriteLine($"d1 granted its frame 0 to d0 as gref {gref}");

        // The backend maps the grant into its guest-physical space and reads the request.
        IGrantMapper mapper = new InProcessGrantMapper(host, backend, new GuestFrameNumber(0x100), windowFrames: 16);
        mapper.TryMap(domainId: 1, gref, readOnly: false, out GrantMapping mapping);
        Span<byte> page = mapper.GetPage(mapping);
        output.WriteLine($"d0 mapped it at gpa 0x{mapping.Address:x}: \"{Encoding.ASCII.GetString(page[..12])}\"");
        output.WriteLine($"in use: {share.IsForeignAccessInUse(gref)}; end access now: {share.EndForeignAccess(gref)}");

        // It answers in place, unmaps, then copies the answer by grant into its own frame 0.
        "pong from d0"u8.CopyTo(page);
        output.WriteLine($"unmap: {mapper.Unmap(mapping)}");
        Span<GnttabCopy> copy =
        [
            new()
            {
                Source = new() { Ref = gref, DomId = 1 },
                Dest = new() { Gmfn = 0, DomId = DomainId.Self },
                Len = 12,
                Flags = (ushort)GrantCopyFlags.SourceGref,
            },
        ];
        mapper.Copy(copy);
        Span<byte> answer = stackalloc byte[12];
        new GuestPhysicalMemory(memory, backend.Ept.Pointer).TryRead(new GuestPhysicalAddress(0), answer, out _);
        output.WriteLine($"copy: {(GrantStatus)copy[0].Status}; d0 frame 0 holds \"{Encoding.ASCII.GetString(answer)}\"");
        output.WriteLine($"in use: {share.IsForeignAccessInUse(gref)}; end access now: {share.EndForeignAccess(gref)}");
    }

    // --- README example ends ---
    [Fact]
    public void The_README_example_prints_what_the_README_shows()
    {
        var output = new StringWriter { NewLine = "\n" };
        Example(output);

        string readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "packages", "GrantTable", "README.md"));
        const string marker = "Output:\n\n```text\n";
        int start = readme.IndexOf(marker, StringComparison.Ordinal);
        Assert.True(start >= 0, "README has no Output block");
        start += marker.Length;
        string shown = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        Assert.Equal(shown, output.ToString());

        // The README's code is this method's code.
        string source = File.ReadAllText(Path.Combine(RepositoryRoot(), "packages", "GrantTable", "tests", "ReadmeExampleTests.cs"));
        string body = Between(source, "    private static void Example(TextWriter output)\n    {\n", "\n    }\n\n    // --- README example ends");
        string readmeCode = Between(readme, "```csharp\n", "\n```");
        Assert.StartsWith(ProgramHeader, readmeCode, StringComparison.Ordinal);
        Assert.Equal(Unindent(body), readmeCode[ProgramHeader.Length..].Trim('\n'));
    }

    // The README's block is a whole program (tests/verify-readme-examples.sh compiles it as Program.cs).
    private const string ProgramHeader = "using System.Text;\nusing VmmKit.Ept;\nusing VmmKit.GrantTable;\nusing VmmKit.Hypercall;\n\nTextWriter output = Console.Out;\n";

    private static string Between(string text, string from, string to)
    {
        int a = text.IndexOf(from, StringComparison.Ordinal);
        Assert.True(a >= 0, $"missing {from}");
        a += from.Length;
        int b = text.IndexOf(to, a, StringComparison.Ordinal);
        Assert.True(b >= 0, $"missing {to}");
        return text[a..b];
    }

    private static string Unindent(string body) =>
        string.Join("\n", body.Split('\n').Select(l => l.Length >= 8 ? l[8..] : l.TrimStart())).Trim('\n');

    private static string RepositoryRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Packages.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return dir ?? throw new InvalidOperationException("Packages.sln not found above the test directory");
    }
}
