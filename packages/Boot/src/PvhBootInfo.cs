namespace VmmKit.Boot;

/// <summary>What the loader produced: where the vCPU starts and where it finds its start info.</summary>
/// <param name="Entry">Initial EIP (XEN_ELFNOTE_PHYS32_ENTRY).</param>
/// <param name="StartInfoAddress">Guest-physical address of <c>struct hvm_start_info</c>, passed in EBX.</param>
/// <param name="KernelEnd">First guest-physical address above the kernel image.</param>
/// <param name="FirstFreeAddress">First page-aligned guest-physical address the loader left unused.</param>
public readonly record struct PvhBootInfo(uint Entry, uint StartInfoAddress, ulong KernelEnd, ulong FirstFreeAddress);
