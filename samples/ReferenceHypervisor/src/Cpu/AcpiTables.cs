using System.Buffers.Binary;
using System.Text;

namespace VmmKit.ReferenceHypervisor.Cpu;

/// <summary>
/// The ACPI tables the toolstack gives a PVH guest, as libxl does with Xen's libacpi (tools/libacpi/build.c for a PVH
/// domain): an RSDP (found through <c>hvm_start_info.rsdp_paddr</c>), an XSDT, a hardware-reduced FADT with an empty
/// DSDT, and a MADT with one enabled local APIC entry per vCPU (APIC ID = vCPU id) and no I/O APIC. The MADT is how a
/// PVH Linux learns its CPUs and that it has local APICs; without it Linux stays in PIC mode and never sets up the
/// Xen clock event device (<c>native_smp_prepare_cpus</c> returns before <c>setup_percpu_clockev</c>). Layouts and
/// checksums from the ACPI 6.4 specification, §5.2.5 (RSDP), §5.2.6 (headers), §5.2.8 (XSDT), §5.2.9 (FADT), §5.2.12 (MADT).
/// </summary>
internal static class AcpiTables
{
    /// <summary>The page the tables occupy.</summary>
    public const int Size = 4096;

    private const int RsdpAt = 0, XsdtAt = 64, FadtAt = 128, DsdtAt = 448, MadtAt = 512;
    private const int HeaderSize = 36, FadtSize = 276, MadtEntrySize = 8;

    /// <summary>The most vCPUs whose MADT entries fit in the page.</summary>
    public const int MaxVcpus = (Size - MadtAt - HeaderSize - 8) / MadtEntrySize;

    /// <summary>FADT Flags: PWR_BUTTON (4) and SLP_BUTTON (5) absent, HW_REDUCED_ACPI (20).</summary>
    private const uint FadtFlags = (1u << 4) | (1u << 5) | (1u << 20);

    /// <summary>IA-PC boot architecture flags: VGA not present (2), CMOS RTC not present (5).</summary>
    private const ushort IapcBootArch = (1 << 2) | (1 << 5);

    /// <summary>Writes the tables for <paramref name="vcpus"/> vCPUs into <paramref name="page"/>, which the guest sees at <paramref name="address"/>; returns the RSDP's address.</summary>
    public static ulong Build(Span<byte> page, ulong address, int vcpus)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vcpus, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(vcpus, MaxVcpus);
        page[..Size].Clear();

        // DSDT: a header and no AML (no devices to describe).
        Header(page.Slice(DsdtAt, HeaderSize), "DSDT", HeaderSize, 2);
        Checksum(page.Slice(DsdtAt, HeaderSize), 9);

        // FADT revision 6 (ACPI 6.0 layout): hardware-reduced, so no PM blocks, SCI or SMI command port.
        Span<byte> fadt = page.Slice(FadtAt, FadtSize);
        Header(fadt, "FACP", FadtSize, 6);
        BinaryPrimitives.WriteUInt32LittleEndian(fadt[40..], (uint)(address + DsdtAt));   // DSDT
        BinaryPrimitives.WriteUInt16LittleEndian(fadt[109..], IapcBootArch);
        BinaryPrimitives.WriteUInt32LittleEndian(fadt[112..], FadtFlags);
        BinaryPrimitives.WriteUInt64LittleEndian(fadt[140..], address + DsdtAt);          // X_DSDT
        Checksum(fadt, 9);

        // MADT: local APIC address, flags 0 (no PC-AT 8259 pair), then type-0 Processor Local APIC entries.
        int madtLength = HeaderSize + 8 + (vcpus * MadtEntrySize);
        Span<byte> madt = page.Slice(MadtAt, madtLength);
        Header(madt, "APIC", madtLength, 5);
        BinaryPrimitives.WriteUInt32LittleEndian(madt[36..], 0xFEE0_0000);
        for (int i = 0; i < vcpus; i++)
        {
            Span<byte> e = madt.Slice(HeaderSize + 8 + (i * MadtEntrySize), MadtEntrySize);
            e[0] = 0;                                            // Processor Local APIC
            e[1] = MadtEntrySize;
            e[2] = (byte)i;                                      // ACPI processor UID
            e[3] = (byte)i;                                      // APIC ID
            BinaryPrimitives.WriteUInt32LittleEndian(e[4..], 1); // Enabled
        }

        Checksum(madt, 9);

        // XSDT: 64-bit pointers to the FADT and the MADT.
        Span<byte> xsdt = page.Slice(XsdtAt, HeaderSize + 16);
        Header(xsdt, "XSDT", HeaderSize + 16, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(xsdt[36..], address + FadtAt);
        BinaryPrimitives.WriteUInt64LittleEndian(xsdt[44..], address + MadtAt);
        Checksum(xsdt, 9);

        // RSDP revision 2: no RSDT, the XSDT's address; checksum over the first 20 bytes, extended checksum over all 36.
        Span<byte> rsdp = page.Slice(RsdpAt, 36);
        Encoding.ASCII.GetBytes("RSD PTR ", rsdp);
        Encoding.ASCII.GetBytes("VMMKIT", rsdp[9..]);
        rsdp[15] = 2;
        BinaryPrimitives.WriteUInt32LittleEndian(rsdp[20..], 36);
        BinaryPrimitives.WriteUInt64LittleEndian(rsdp[24..], address + XsdtAt);
        Checksum(rsdp[..20], 8);
        Checksum(rsdp, 32);
        return address + RsdpAt;
    }

    private static void Header(Span<byte> table, string signature, int length, byte revision)
    {
        Encoding.ASCII.GetBytes(signature, table);
        BinaryPrimitives.WriteUInt32LittleEndian(table[4..], (uint)length);
        table[8] = revision;
        Encoding.ASCII.GetBytes("VMMKIT", table[10..]);          // OEMID
        Encoding.ASCII.GetBytes("VMMKITHV", table[16..]);        // OEM table ID
        BinaryPrimitives.WriteUInt32LittleEndian(table[24..], 1);  // OEM revision
        Encoding.ASCII.GetBytes("VMMK", table[28..]);            // creator ID
        BinaryPrimitives.WriteUInt32LittleEndian(table[32..], 1);  // creator revision
    }

    /// <summary>Sets the byte at <paramref name="at"/> so that the bytes of <paramref name="table"/> sum to 0 (mod 256).</summary>
    private static void Checksum(Span<byte> table, int at)
    {
        table[at] = 0;
        byte sum = 0;
        foreach (byte b in table)
            sum += b;
        table[at] = (byte)-sum;
    }
}
