namespace VmmKit.XenStore.Watches;

/// <summary>
/// A registered watch (xenstored's <c>struct watch</c>): an absolute path or special name, the client's
/// token, and whether the client gave a relative path (events are then reported relative too).
/// </summary>
internal sealed record XsWatch(string Path, string Token, bool Relative)
{
    public bool IsSpecial => Path.Length > 0 && Path[0] == '@';

    /// <summary>Bytes accounted to the owner's memory quota.</summary>
    public int MemorySize => Path.Length + Token.Length + 32;
}
