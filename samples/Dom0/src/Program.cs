using System.Net.Sockets;
using System.Text;

// vmmkit-xl: xl's verbs against the control domain (vmmkit-dom0) of a host brought up with
// `vmmkit-hv host --rundir DIR --dom0 vmmkit-dom0`. The run directory comes from --rundir DIR or $VMMKIT_RUNDIR.
const string usage = """
    usage: vmmkit-xl [--rundir DIR] COMMAND
      create [-c] CFG      build and start a domain from an xl.cfg (type="pvh"); -c attaches its console
      list                 list domains (xl's columns)
      console DOMAIN       attach to the domain's console (Ctrl-] leaves)
      shutdown DOMAIN      ask the domain to power off (control/shutdown; stopped at once without PV control)
      reboot DOMAIN        ask the domain to reboot (likewise); on_reboot in its xl.cfg says what follows
      destroy DOMAIN       stop the domain at once
      pause DOMAIN | unpause DOMAIN
      info                 host information
    """;

var rest = new List<string>(args);
string rundir = Environment.GetEnvironmentVariable("VMMKIT_RUNDIR") is { Length: > 0 } env ? env : "/run/vmmkit";
if (rest.Count >= 2 && rest[0] == "--rundir")
{
    rundir = rest[1];
    rest.RemoveRange(0, 2);
}

if (rest.Count == 0 || rest[0] is "-h" or "--help" or "help")
{
    Console.Error.WriteLine(usage);
    return rest.Count == 0 ? 2 : 0;
}

string verb = rest[0];
// xl create -c: attach to the new domain's console once it is started.
bool attach = verb == "create" && rest.Remove("-c");
int expected = verb is "list" or "info" ? 1 : 2;
if (rest.Count != expected || verb is not ("create" or "list" or "console" or "shutdown" or "reboot" or "destroy" or "pause" or "unpause" or "info"))
{
    Console.Error.WriteLine(usage);
    return 2;
}

if (verb == "create")
    rest[1] = Path.GetFullPath(rest[1]);

using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
if (!TryConnect(socket, rundir))
    return 1;

using var stream = new NetworkStream(socket, ownsSocket: false);
stream.Write(Encoding.UTF8.GetBytes(string.Join('\t', rest) + "\n"));
if (verb == "console")
    return RunConsole(stream);

using var reader = new StreamReader(stream, Encoding.UTF8);
string? started = null;
while (reader.ReadLine() is { } line)
{
    if (line == "ok")
    {
        if (!attach || started is null)
            return 0;
        using var consoleSocket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        if (!TryConnect(consoleSocket, rundir))
            return 1;
        using var consoleStream = new NetworkStream(consoleSocket, ownsSocket: false);
        consoleStream.Write(Encoding.UTF8.GetBytes($"console\t{started}\n"));
        return RunConsole(consoleStream);
    }

    if (line.StartsWith("Started domain ", StringComparison.Ordinal) && line.LastIndexOf("(id=", StringComparison.Ordinal) is int id and > 0)
        started = line[(id + 4)..].TrimEnd(')');
    if (line.StartsWith("error: ", StringComparison.Ordinal))
    {
        Console.Error.WriteLine($"vmmkit-xl: {line[7..]}");
        return 1;
    }

    Console.WriteLine(line);
}

Console.Error.WriteLine("vmmkit-xl: Dom0 closed the connection");
return 1;

static bool TryConnect(Socket socket, string rundir)
{
    try
    {
        socket.Connect(new UnixDomainSocketEndPoint(Path.Combine(rundir, "dom0.sock")));
        return true;
    }
    catch (SocketException e)
    {
        Console.Error.WriteLine($"vmmkit-xl: cannot reach Dom0 at {Path.Combine(rundir, "dom0.sock")}: {e.Message}");
        return false;
    }
}

// xl console: the domain's output to stdout, stdin to the domain, until Ctrl-] (0x1d), the end of stdin, or the end of
// the domain (Dom0 closes the stream). A terminal on stdin is put in raw mode for the session (as xenconsole's
// cfmakeraw), so that keys reach the guest's own line discipline unprocessed and are echoed only by it.
static int RunConsole(NetworkStream stream)
{
    var status = new StringBuilder();
    int b;
    while ((b = stream.ReadByte()) is >= 0 and not '\n')
        status.Append((char)b);
    if (status.ToString() != "ok")
    {
        Console.Error.WriteLine($"vmmkit-xl: {status.ToString().Replace("error: ", "", StringComparison.Ordinal)}");
        return 1;
    }

    using var raw = RawTerminal.TryEnter(0);
    // fd 1 and fd 0 as plain files: .NET's console streams would read a terminal line by line with their own echo.
    using var stdout = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(1, ownsHandle: false), FileAccess.Write, bufferSize: 0);
    var output = Task.Run(() =>
    {
        var buffer = new byte[4096];
        int n;
        try
        {
            while ((n = stream.Read(buffer)) > 0)
            {
                stdout.Write(buffer, 0, n);
                stdout.Flush();
            }
        }
        catch (IOException)
        {
        }
    });
    var input = Task.Run(() =>
    {
        using var stdin = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(0, ownsHandle: false), FileAccess.Read, bufferSize: 0);
        var bytes = new byte[256];
        int read;
        try
        {
            while ((read = stdin.Read(bytes)) > 0)
            {
                int escape = Array.IndexOf(bytes, (byte)0x1d, 0, read);
                if (escape >= 0)
                {
                    stream.Write(bytes, 0, escape);
                    break;
                }

                stream.Write(bytes, 0, read);
            }
        }
        catch (IOException)
        {
            return;   // the domain ended while a key was on its way
        }

        // Leaving: Dom0 sees the end of input and closes its side once what it already sent has been read.
        stream.Socket.Shutdown(SocketShutdown.Send);
        output.Wait(TimeSpan.FromSeconds(5));
    });
    Task.WaitAny(output, input);
    if (input.IsCompleted)
        output.Wait(TimeSpan.FromSeconds(5));
    return 0;
}
