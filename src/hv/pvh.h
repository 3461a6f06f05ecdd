/*
 * PVH boot: load an ELF kernel that carries XEN_ELFNOTE_PHYS32_ENTRY and build the
 * hvm_start_info block (xen/arch-x86/hvm/start_info.h) that the entry point finds in
 * EBX, the way Xen's domain builder does. The ELF bytes are untrusted.
 */
#ifndef XKVM_HV_PVH_H
#define XKVM_HV_PVH_H

#include <stddef.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/arch-x86/hvm/start_info.h>

#include "hv/gphys.h"

struct pvh_image {
    uint32_t entry;     /* physical 32-bit entry point from XEN_ELFNOTE_PHYS32_ENTRY */
    uint64_t load_lo;   /* lowest physical address a PT_LOAD segment occupies */
    uint64_t load_hi;   /* one past the highest (including bss) */
};

/*
 * Validate an ELF32 or ELF64 x86 image in memory and find its PVH entry. Rejects (with
 * a message in err): not ELF, wrong class/machine/endianness, headers or segments out
 * of the file, overlapping or overflowing segments, no PT_LOAD, no PHYS32_ENTRY note.
 * Returns 0 or -EINVAL.
 */
int pvh_parse(const void *elf, size_t size, struct pvh_image *out,
              char *err, size_t errlen);

/*
 * Copy every PT_LOAD segment to its physical address (p_paddr) and zero the rest of
 * its memory size. Fails with -EFAULT (and a message) if a segment falls outside
 * populated guest memory. `img` must come from pvh_parse on the same bytes.
 */
int pvh_load(const void *elf, size_t size, const struct pvh_image *img,
             const struct gphys *g, char *err, size_t errlen);

/*
 * Write hvm_start_info (version 1), then the memory map, then the NUL-terminated
 * command line, packed from gpa `at` upwards (8-byte aligned), all below `limit`.
 * On success *start_info_gpa is the value for EBX. Returns 0, -ENOSPC or -EFAULT.
 */
int pvh_write_start_info(const struct gphys *g, uint64_t at, uint64_t limit,
                         const char *cmdline,
                         const struct hvm_memmap_table_entry *map, unsigned nr_map,
                         uint64_t *start_info_gpa, char *err, size_t errlen);

/*
 * The module list (xl's `ramdisk` is module 0): write nr entries of mods at gpa `at`
 * (8-byte aligned upwards, below 4 GiB) and point the hvm_start_info at start_info_gpa
 * (pvh_write_start_info's) to them: nr_modules, modlist_paddr. Each module must lie in
 * guest memory below 4 GiB, outside the table. 0, -EINVAL, -ENOSPC or -EFAULT.
 */
int pvh_write_modules(const struct gphys *g, uint64_t start_info_gpa, uint64_t at,
                      const struct hvm_modlist_entry *mods, unsigned nr,
                      char *err, size_t errlen);

#endif
