namespace VmmKit.Boot;

/// <summary>A boot module (initrd and the like) handed to the guest through <c>hvm_modlist_entry</c>.</summary>
/// <param name="Data">The module's bytes.</param>
/// <param name="CommandLine">Its command line, or empty for none.</param>
public sealed record PvhModule(byte[] Data, string CommandLine);
