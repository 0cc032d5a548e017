using System.Text;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Where the console lines of a domain the toolstack built (port 0xE9, COM1, console_io; not domain 0, whose output Xen
/// writes as it is) go: the host's log, as "(dN) line". As Xen's <c>hvm_print_line</c> (xen/arch/x86/hvm/hvm.c) and <c>guest_console_write</c>
/// (xen/drivers/char/console.c) do, only printable characters and tabs are kept (<c>is_console_printable</c>), so a
/// guest cannot send escape sequences to the operator's terminal; and Xen's guest messages are rate-limited
/// (<c>guest_printk</c>, <c>printk_ratelimit</c>), so here at most <see cref="MaxLoggedLines"/> lines and
/// <see cref="MaxLoggedBytes"/> characters of a domain are logged, then one line says the rest is not: a guest printing
/// newlines at full speed cannot grow the host's log without bound. The domain's transcript keeps its bytes as written.
/// Called under the console's lock (<see cref="DomainConsole"/> completes its lines one at a time).
/// </summary>
internal sealed class GuestConsoleLog(Machine machine, ushort domainId)
{
    /// <summary>The most lines of one domain written to the host's log.</summary>
    public const int MaxLoggedLines = 4096;

    /// <summary>The most characters of one domain written to the host's log (as much as its transcript keeps).</summary>
    public const int MaxLoggedBytes = DomainConsole.MaxTranscriptBytes;

    private int _lines, _bytes;

    /// <summary>Logs one completed console line (its '\n' dropped), filtered, while the domain's allowance lasts.</summary>
    public void Line(string line)
    {
        if (_lines > MaxLoggedLines)
            return;
        if (_lines == MaxLoggedLines || _bytes >= MaxLoggedBytes)
        {
            _lines = MaxLoggedLines + 1;
            machine.Log($"(d{domainId}) more console output; not logged");
            return;
        }

        var text = new StringBuilder(line.Length);
        foreach (char c in line)
        {
            if (IsConsolePrintable(c))
                text.Append(c);
        }

        _lines++;
        _bytes += text.Length;
        machine.Log($"(d{domainId}) {text}");
    }

    // Xen's is_console_printable: isprint (its ctype counts Latin-1 0xA0-0xFF printable, not the C1 controls) or tab.
    private static bool IsConsolePrintable(char c) => c is (>= ' ' and < (char)0x7F) or (>= (char)0xA0 and <= (char)0xFF) or '\t';
}
