#!/usr/bin/env python3
"""Generates packages/Vmx/src/VmcsField.cs and VmcsFieldCatalog.g.cs.

Source: Intel SDM Vol. 3D Appendix B "Field Encoding in VMCS" (tables B-1 .. B-14).
Each line: encoding, PascalCase enum name, SDM field name. 64-bit fields get a
"...High" member (encoding | 1) automatically.
Run: python3 packages/Vmx/tools/vmcs_fields.py
"""
import os

FIELDS = """
# B.1.1 16-bit control fields
0000 VirtualProcessorIdentifier | Virtual-processor identifier (VPID)
0002 PostedInterruptNotificationVector | Posted-interrupt notification vector
0004 EptpIndex | EPTP index
0006 HlatPrefixSize | HLAT prefix size
0008 LastPidPointerIndex | Last PID-pointer index
# B.1.2 16-bit guest-state fields
0800 GuestEsSelector | Guest ES selector
0802 GuestCsSelector | Guest CS selector
0804 GuestSsSelector | Guest SS selector
0806 GuestDsSelector | Guest DS selector
0808 GuestFsSelector | Guest FS selector
080A GuestGsSelector | Guest GS selector
080C GuestLdtrSelector | Guest LDTR selector
080E GuestTrSelector | Guest TR selector
0810 GuestInterruptStatus | Guest interrupt status
0812 PmlIndex | PML index
0814 GuestUinv | Guest UINV
# B.1.3 16-bit host-state fields
0C00 HostEsSelector | Host ES selector
0C02 HostCsSelector | Host CS selector
0C04 HostSsSelector | Host SS selector
0C06 HostDsSelector | Host DS selector
0C08 HostFsSelector | Host FS selector
0C0A HostGsSelector | Host GS selector
0C0C HostTrSelector | Host TR selector
# B.2.1 64-bit control fields
2000 IoBitmapAAddress | Address of I/O bitmap A
2002 IoBitmapBAddress | Address of I/O bitmap B
2004 MsrBitmapsAddress | Address of MSR bitmaps
2006 VmExitMsrStoreAddress | VM-exit MSR-store address
2008 VmExitMsrLoadAddress | VM-exit MSR-load address
200A VmEntryMsrLoadAddress | VM-entry MSR-load address
200C ExecutiveVmcsPointer | Executive-VMCS pointer
200E PmlAddress | PML address
2010 TscOffset | TSC offset
2012 VirtualApicAddress | Virtual-APIC address
2014 ApicAccessAddress | APIC-access address
2016 PostedInterruptDescriptorAddress | Posted-interrupt descriptor address
2018 VmFunctionControls | VM-function controls
201A EptPointer | EPT pointer (EPTP)
201C EoiExitBitmap0 | EOI-exit bitmap 0
201E EoiExitBitmap1 | EOI-exit bitmap 1
2020 EoiExitBitmap2 | EOI-exit bitmap 2
2022 EoiExitBitmap3 | EOI-exit bitmap 3
2024 EptpListAddress | EPTP-list address
2026 VmreadBitmapAddress | VMREAD-bitmap address
2028 VmwriteBitmapAddress | VMWRITE-bitmap address
202A VirtualizationExceptionInformationAddress | Virtualization-exception information address
202C XssExitingBitmap | XSS-exiting bitmap
202E EnclsExitingBitmap | ENCLS-exiting bitmap
2030 SubPagePermissionTablePointer | Sub-page-permission-table pointer
2032 TscMultiplier | TSC multiplier
2034 TertiaryProcessorBasedVmExecutionControls | Tertiary processor-based VM-execution controls
2036 EnclvExitingBitmap | ENCLV-exiting bitmap
2038 LowPasidDirectoryAddress | Low PASID directory address
203A HighPasidDirectoryAddress | High PASID directory address
203C SharedEptPointer | Shared EPT pointer
203E PconfigExitingBitmap | PCONFIG-exiting bitmap
2040 HlatPointer | Hypervisor-managed linear-address translation pointer
2042 PidPointerTableAddress | PID-pointer table address
2044 SecondaryVmExitControls | Secondary VM-exit controls
204A Ia32SpecCtrlMask | IA32_SPEC_CTRL mask
204C Ia32SpecCtrlShadow | IA32_SPEC_CTRL shadow
# B.2.2 64-bit read-only data field
2400 GuestPhysicalAddress | Guest-physical address
# B.2.3 64-bit guest-state fields
2800 VmcsLinkPointer | VMCS link pointer
2802 GuestIa32Debugctl | Guest IA32_DEBUGCTL
2804 GuestIa32Pat | Guest IA32_PAT
2806 GuestIa32Efer | Guest IA32_EFER
2808 GuestIa32PerfGlobalCtrl | Guest IA32_PERF_GLOBAL_CTRL
280A GuestPdpte0 | Guest PDPTE0
280C GuestPdpte1 | Guest PDPTE1
280E GuestPdpte2 | Guest PDPTE2
2810 GuestPdpte3 | Guest PDPTE3
2812 GuestIa32Bndcfgs | Guest IA32_BNDCFGS
2814 GuestIa32RtitCtl | Guest IA32_RTIT_CTL
2816 GuestIa32LbrCtl | Guest IA32_LBR_CTL
2818 GuestIa32Pkrs | Guest IA32_PKRS
# B.2.4 64-bit host-state fields
2C00 HostIa32Pat | Host IA32_PAT
2C02 HostIa32Efer | Host IA32_EFER
2C04 HostIa32PerfGlobalCtrl | Host IA32_PERF_GLOBAL_CTRL
2C06 HostIa32Pkrs | Host IA32_PKRS
# B.3.1 32-bit control fields
4000 PinBasedVmExecutionControls | Pin-based VM-execution controls
4002 PrimaryProcessorBasedVmExecutionControls | Primary processor-based VM-execution controls
4004 ExceptionBitmap | Exception bitmap
4006 PageFaultErrorCodeMask | Page-fault error-code mask
4008 PageFaultErrorCodeMatch | Page-fault error-code match
400A Cr3TargetCount | CR3-target count
400C VmExitControls | Primary VM-exit controls
400E VmExitMsrStoreCount | VM-exit MSR-store count
4010 VmExitMsrLoadCount | VM-exit MSR-load count
4012 VmEntryControls | VM-entry controls
4014 VmEntryMsrLoadCount | VM-entry MSR-load count
4016 VmEntryInterruptionInformation | VM-entry interruption-information field
4018 VmEntryExceptionErrorCode | VM-entry exception error code
401A VmEntryInstructionLength | VM-entry instruction length
401C TprThreshold | TPR threshold
401E SecondaryProcessorBasedVmExecutionControls | Secondary processor-based VM-execution controls
4020 PleGap | PLE_Gap
4022 PleWindow | PLE_Window
4024 InstructionTimeoutControl | Instruction-timeout control
# B.3.2 32-bit read-only data fields
4400 VmInstructionError | VM-instruction error
4402 ExitReason | Exit reason
4404 VmExitInterruptionInformation | VM-exit interruption information
4406 VmExitInterruptionErrorCode | VM-exit interruption error code
4408 IdtVectoringInformation | IDT-vectoring information field
440A IdtVectoringErrorCode | IDT-vectoring error code
440C VmExitInstructionLength | VM-exit instruction length
440E VmExitInstructionInformation | VM-exit instruction information
# B.3.3 32-bit guest-state fields
4800 GuestEsLimit | Guest ES limit
4802 GuestCsLimit | Guest CS limit
4804 GuestSsLimit | Guest SS limit
4806 GuestDsLimit | Guest DS limit
4808 GuestFsLimit | Guest FS limit
480A GuestGsLimit | Guest GS limit
480C GuestLdtrLimit | Guest LDTR limit
480E GuestTrLimit | Guest TR limit
4810 GuestGdtrLimit | Guest GDTR limit
4812 GuestIdtrLimit | Guest IDTR limit
4814 GuestEsAccessRights | Guest ES access rights
4816 GuestCsAccessRights | Guest CS access rights
4818 GuestSsAccessRights | Guest SS access rights
481A GuestDsAccessRights | Guest DS access rights
481C GuestFsAccessRights | Guest FS access rights
481E GuestGsAccessRights | Guest GS access rights
4820 GuestLdtrAccessRights | Guest LDTR access rights
4822 GuestTrAccessRights | Guest TR access rights
4824 GuestInterruptibilityState | Guest interruptibility state
4826 GuestActivityState | Guest activity state
4828 GuestSmbase | Guest SMBASE
482A GuestIa32SysenterCs | Guest IA32_SYSENTER_CS
482E VmxPreemptionTimerValue | VMX-preemption timer value
# B.3.4 32-bit host-state field
4C00 HostIa32SysenterCs | Host IA32_SYSENTER_CS
# B.4.1 natural-width control fields
6000 Cr0GuestHostMask | CR0 guest/host mask
6002 Cr4GuestHostMask | CR4 guest/host mask
6004 Cr0ReadShadow | CR0 read shadow
6006 Cr4ReadShadow | CR4 read shadow
6008 Cr3TargetValue0 | CR3-target value 0
600A Cr3TargetValue1 | CR3-target value 1
600C Cr3TargetValue2 | CR3-target value 2
600E Cr3TargetValue3 | CR3-target value 3
# B.4.2 natural-width read-only data fields
6400 ExitQualification | Exit qualification
6402 IoRcx | I/O RCX
6404 IoRsi | I/O RSI
6406 IoRdi | I/O RDI
6408 IoRip | I/O RIP
640A GuestLinearAddress | Guest-linear address
# B.4.3 natural-width guest-state fields
6800 GuestCr0 | Guest CR0
6802 GuestCr3 | Guest CR3
6804 GuestCr4 | Guest CR4
6806 GuestEsBase | Guest ES base
6808 GuestCsBase | Guest CS base
680A GuestSsBase | Guest SS base
680C GuestDsBase | Guest DS base
680E GuestFsBase | Guest FS base
6810 GuestGsBase | Guest GS base
6812 GuestLdtrBase | Guest LDTR base
6814 GuestTrBase | Guest TR base
6816 GuestGdtrBase | Guest GDTR base
6818 GuestIdtrBase | Guest IDTR base
681A GuestDr7 | Guest DR7
681C GuestRsp | Guest RSP
681E GuestRip | Guest RIP
6820 GuestRflags | Guest RFLAGS
6822 GuestPendingDebugExceptions | Guest pending debug exceptions
6824 GuestIa32SysenterEsp | Guest IA32_SYSENTER_ESP
6826 GuestIa32SysenterEip | Guest IA32_SYSENTER_EIP
6828 GuestIa32SCet | Guest IA32_S_CET
682A GuestSsp | Guest SSP
682C GuestIa32InterruptSspTableAddr | Guest IA32_INTERRUPT_SSP_TABLE_ADDR
# B.4.4 natural-width host-state fields
6C00 HostCr0 | Host CR0
6C02 HostCr3 | Host CR3
6C04 HostCr4 | Host CR4
6C06 HostFsBase | Host FS base
6C08 HostGsBase | Host GS base
6C0A HostTrBase | Host TR base
6C0C HostGdtrBase | Host GDTR base
6C0E HostIdtrBase | Host IDTR base
6C10 HostIa32SysenterEsp | Host IA32_SYSENTER_ESP
6C12 HostIa32SysenterEip | Host IA32_SYSENTER_EIP
6C14 HostRsp | Host RSP
6C16 HostRip | Host RIP
6C18 HostIa32SCet | Host IA32_S_CET
6C1A HostSsp | Host SSP
6C1C HostIa32InterruptSspTableAddr | Host IA32_INTERRUPT_SSP_TABLE_ADDR
"""

def parse():
    out = []
    for line in FIELDS.strip().splitlines():
        if line.startswith('#'):
            out.append(('section', line[1:].strip()))
            continue
        head, sdm = line.split('|')
        enc, name = head.split()
        enc = int(enc, 16)
        out.append(('field', enc, name, sdm.strip()))
        if (enc >> 13) & 3 == 1:
            out.append(('field', enc | 1, name + 'High', sdm.strip() + ' (high)'))
    return out

HEADER = "// <auto-generated> by packages/Vmx/tools/vmcs_fields.py from Intel SDM Vol. 3D Appendix B; edit the script, not this file. </auto-generated>\n"

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(here, '..', 'src')
    items = parse()
    e = [HEADER, "namespace VmmKit.Vmx;\n\n",
         "/// <summary>\n/// A VMCS field, valued by its VMREAD/VMWRITE encoding (Intel SDM Vol. 3D Appendix B \"Field Encoding in VMCS\").\n",
         "/// Bit 0 is the access type (1 = high 32 bits of a 64-bit field), bits 9:1 the index, bits 11:10 the type\n",
         "/// (control, VM-exit information, guest state, host state) and bits 14:13 the width (16-bit, 64-bit, 32-bit, natural)\n",
         "/// (SDM Vol. 3C §25.11.2). <see cref=\"VmcsFieldInfo\"/> derives width, type and SDM name.\n/// </summary>\n",
         "public enum VmcsField : uint\n{\n"]
    for it in items:
        if it[0] == 'section':
            e.append(f"    // {it[1]}\n")
            continue
        _, enc, name, sdm = it
        e.append(f"    /// <summary>{sdm}.</summary>\n    {name} = 0x{enc:04X},\n")
    e.append("}\n")
    open(os.path.join(src, 'VmcsField.cs'), 'w').write(''.join(e))
    c = [HEADER, "namespace VmmKit.Vmx;\n\npublic static partial class VmcsFieldInfo\n{\n",
         "    /// <summary>Every field encoding of SDM Appendix B, in encoding order, with its SDM name.</summary>\n",
         "    private static readonly (VmcsField Field, string SdmName)[] Catalog =\n    [\n"]
    for it in items:
        if it[0] == 'field':
            _, enc, name, sdm = it
            c.append(f"        (VmcsField.{name}, \"{sdm}\"),\n")
    c.append("    ];\n}\n")
    open(os.path.join(src, 'VmcsFieldCatalog.g.cs'), 'w').write(''.join(c))

if __name__ == '__main__':
    main()
