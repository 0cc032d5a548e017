namespace VmmKit.ReferenceHypervisor.Boot;

/// <summary>Memory map entry types (xen/include/public/arch-x86/hvm/start_info.h: "the e820 numbering").</summary>
internal enum E820Type : uint
{
    /// <summary>Usable RAM.</summary>
    Ram = 1,

    /// <summary>Reserved; the guest must not use it.</summary>
    Reserved = 2,
}
