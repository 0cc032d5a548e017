using System.Runtime.CompilerServices;
using VmmKit.Ept;

namespace VmmKit.GrantTable;

// What unmap_common_complete needs of a mapping that left the grantee's EPT, kept until the batch's flush: the pin,
// the status flags and the frame reference go only after the vCPUs dropped their translations (gnttab_flush_tlb).
internal readonly record struct PendingUnmap(GrantDomain Granter, uint Ref, GrantMapFlags Flags, MachineFrameNumber Frame);

// One batch of unmaps (GNTTAB_UNMAP_BATCH_SIZE operations), on the stack.
[InlineArray(GrantTableHost.UnmapBatchSize)]
internal struct PendingUnmaps
{
    private PendingUnmap _first;
}
