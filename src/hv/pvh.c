/*
 * PVH boot: ELF validation, segment loading and hvm_start_info construction.
 *
 * The ELF bytes are untrusted. Every header is copied out of the buffer with memcpy
 * (no alignment assumptions) and every offset/size is checked for overflow before
 * use. ELF32 and ELF64 headers are both converted to one internal form. The host is
 * x86, so the little-endian ELF fields are read in host order.
 */
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <xen/elfnote.h>

#include "hv/pvh.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ELF fields are read in host order");

/* Real kernels have a handful of program headers; anything near this is hostile. */
#define PVH_MAX_PHNUM 128
#define PVH_4G (UINT64_C(1) << 32)

struct phdr {
    uint32_t type, flags;
    uint64_t offset, paddr, filesz, memsz, align;
};

struct elf_info {
    const uint8_t *data;
    size_t size;
    bool is64;
    uint64_t phoff, shoff;
    unsigned phnum, shnum, shentsize;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* [off, off + len) lies inside the file, without overflow. */
static bool in_file(const struct elf_info *e, uint64_t off, uint64_t len)
{
    return off <= e->size && len <= e->size - off;
}

static int read_ehdr(const void *elf, size_t size, struct elf_info *e,
                     char *err, size_t errlen)
{
    const uint8_t *b = elf;

    memset(e, 0, sizeof(*e));
    e->data = b;
    e->size = size;
    if (!elf || size < EI_NIDENT) {
        seterr(err, errlen, "file too small for an ELF header (size 0x%zx)", size);
        return -EINVAL;
    }
    if (memcmp(b, ELFMAG, SELFMAG) != 0) {
        seterr(err, errlen, "not an ELF file (bad magic)");
        return -EINVAL;
    }
    if (b[EI_CLASS] != ELFCLASS32 && b[EI_CLASS] != ELFCLASS64) {
        seterr(err, errlen, "unsupported ELF class %u", b[EI_CLASS]);
        return -EINVAL;
    }
    if (b[EI_DATA] != ELFDATA2LSB) {
        seterr(err, errlen, "ELF data encoding %u is not little endian", b[EI_DATA]);
        return -EINVAL;
    }
    if (b[EI_VERSION] != EV_CURRENT) {
        seterr(err, errlen, "unsupported ELF ident version %u", b[EI_VERSION]);
        return -EINVAL;
    }
    e->is64 = b[EI_CLASS] == ELFCLASS64;

    uint16_t type, machine, phentsize, phnum, shentsize, shnum;
    uint32_t version;
    if (e->is64) {
        Elf64_Ehdr h;
        if (size < sizeof(h)) {
            seterr(err, errlen, "file too small for an ELF64 header (size 0x%zx)", size);
            return -EINVAL;
        }
        memcpy(&h, b, sizeof(h));
        type = h.e_type; machine = h.e_machine; version = h.e_version;
        e->phoff = h.e_phoff; phentsize = h.e_phentsize; phnum = h.e_phnum;
        e->shoff = h.e_shoff; shentsize = h.e_shentsize; shnum = h.e_shnum;
    } else {
        Elf32_Ehdr h;
        if (size < sizeof(h)) {
            seterr(err, errlen, "file too small for an ELF32 header (size 0x%zx)", size);
            return -EINVAL;
        }
        memcpy(&h, b, sizeof(h));
        type = h.e_type; machine = h.e_machine; version = h.e_version;
        e->phoff = h.e_phoff; phentsize = h.e_phentsize; phnum = h.e_phnum;
        e->shoff = h.e_shoff; shentsize = h.e_shentsize; shnum = h.e_shnum;
    }
    if (version != EV_CURRENT) {
        seterr(err, errlen, "unsupported ELF version %u", version);
        return -EINVAL;
    }
    if (type != ET_EXEC) {
        seterr(err, errlen, "ELF type %u is not ET_EXEC", type);
        return -EINVAL;
    }
    if (machine != EM_386 && machine != EM_X86_64) {
        seterr(err, errlen, "ELF machine %u is not x86 (EM_386 or EM_X86_64)", machine);
        return -EINVAL;
    }

    size_t want = e->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    if (phnum == 0) {
        seterr(err, errlen, "no program headers");
        return -EINVAL;
    }
    if (phnum == PN_XNUM || phnum > PVH_MAX_PHNUM) {
        seterr(err, errlen, "too many program headers (%u, at most %u)", phnum,
               PVH_MAX_PHNUM);
        return -EINVAL;
    }
    if (phentsize != want) {
        seterr(err, errlen, "program header entry size %u, expected %zu", phentsize, want);
        return -EINVAL;
    }
    if (!in_file(e, e->phoff, (uint64_t)phnum * want)) {
        seterr(err, errlen,
               "program headers at 0x%llx (%u x %zu bytes) run past end of file (size 0x%zx)",
               (unsigned long long)e->phoff, phnum, want, size);
        return -EINVAL;
    }
    e->phnum = phnum;
    /* Section headers are optional; they are checked only if the note fallback needs them. */
    e->shnum = e->shoff ? shnum : 0;
    e->shentsize = shentsize;
    return 0;
}

static void read_phdr(const struct elf_info *e, unsigned i, struct phdr *p)
{
    if (e->is64) {
        Elf64_Phdr h;
        memcpy(&h, e->data + e->phoff + (uint64_t)i * sizeof(h), sizeof(h));
        *p = (struct phdr){ h.p_type, h.p_flags, h.p_offset, h.p_paddr,
                            h.p_filesz, h.p_memsz, h.p_align };
    } else {
        Elf32_Phdr h;
        memcpy(&h, e->data + e->phoff + (uint64_t)i * sizeof(h), sizeof(h));
        *p = (struct phdr){ h.p_type, h.p_flags, h.p_offset, h.p_paddr,
                            h.p_filesz, h.p_memsz, h.p_align };
    }
}

/*
 * Scan one note area [off, off + len) of the file for XEN_ELFNOTE_PHYS32_ENTRY.
 * `where` names the area in messages. Returns 1 if found (*entry set), 0 if not,
 * -EINVAL for a malformed area or note.
 */
static int scan_notes(const struct elf_info *e, uint64_t off, uint64_t len,
                      uint64_t align, const char *where, uint32_t *entry,
                      char *err, size_t errlen)
{
    /* Notes are 4-byte aligned, except in areas explicitly aligned to 8 (gABI). */
    uint64_t a = align == 8 ? 8 : 4;
    uint64_t pos = 0;
    int found = 0;

    while (pos < len) {
        Elf32_Nhdr n;   /* Elf64_Nhdr has the same layout */
        if (len - pos < sizeof(n)) {
            seterr(err, errlen, "%s: truncated note header at offset 0x%llx", where,
                   (unsigned long long)(off + pos));
            return -EINVAL;
        }
        memcpy(&n, e->data + off + pos, sizeof(n));
        /* descriptor and next note start at the area's alignment (offsets from off) */
        uint64_t name_off = pos + sizeof(n);
        uint64_t desc_off = (name_off + n.n_namesz + a - 1) & ~(a - 1);
        uint64_t next = (desc_off + n.n_descsz + a - 1) & ~(a - 1);
        if (desc_off + n.n_descsz > len) {
            seterr(err, errlen,
                   "%s: note at offset 0x%llx (name size %u, desc size %u) runs past the "
                   "end of the note area", where, (unsigned long long)(off + pos),
                   n.n_namesz, n.n_descsz);
            return -EINVAL;
        }
        if (next > len)
            next = len;   /* tolerate a last note without its tail padding */
        const uint8_t *name = e->data + off + name_off;
        const uint8_t *desc = e->data + off + desc_off;
        if (n.n_namesz == 4 && memcmp(name, "Xen", 4) == 0 &&
            n.n_type == XEN_ELFNOTE_PHYS32_ENTRY) {
            uint64_t v;
            if (n.n_descsz == 4) {
                uint32_t v32;
                memcpy(&v32, desc, 4);
                v = v32;
            } else if (n.n_descsz == 8) {
                memcpy(&v, desc, 8);
                if (v >= PVH_4G) {
                    seterr(err, errlen, "%s: PHYS32_ENTRY 0x%llx is not below 4 GiB",
                           where, (unsigned long long)v);
                    return -EINVAL;
                }
            } else {
                seterr(err, errlen, "%s: PHYS32_ENTRY note has descriptor size %u "
                       "(expected 4 or 8)", where, n.n_descsz);
                return -EINVAL;
            }
            if (found && *entry != (uint32_t)v) {
                seterr(err, errlen, "%s: conflicting PHYS32_ENTRY notes (0x%x and 0x%x)",
                       where, *entry, (uint32_t)v);
                return -EINVAL;
            }
            *entry = (uint32_t)v;
            found = 1;
        }
        pos = next;
    }
    return found;
}

/* Fallback for images whose PT_NOTE segments lack the entry: look in SHT_NOTE sections. */
static int scan_note_sections(const struct elf_info *e, uint32_t *entry,
                              char *err, size_t errlen)
{
    if (e->shnum == 0)
        return 0;
    size_t want = e->is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
    if (e->shentsize != want) {
        seterr(err, errlen, "section header entry size %u, expected %zu",
               e->shentsize, want);
        return -EINVAL;
    }
    if (!in_file(e, e->shoff, (uint64_t)e->shnum * want)) {
        seterr(err, errlen,
               "section headers at 0x%llx (%u x %zu bytes) run past end of file (size 0x%zx)",
               (unsigned long long)e->shoff, e->shnum, want, e->size);
        return -EINVAL;
    }
    int found = 0;
    for (unsigned i = 0; i < e->shnum; i++) {
        uint32_t type;
        uint64_t off, sz, align;
        if (e->is64) {
            Elf64_Shdr s;
            memcpy(&s, e->data + e->shoff + (uint64_t)i * want, sizeof(s));
            type = s.sh_type; off = s.sh_offset; sz = s.sh_size; align = s.sh_addralign;
        } else {
            Elf32_Shdr s;
            memcpy(&s, e->data + e->shoff + (uint64_t)i * want, sizeof(s));
            type = s.sh_type; off = s.sh_offset; sz = s.sh_size; align = s.sh_addralign;
        }
        if (type != SHT_NOTE)
            continue;
        if (!in_file(e, off, sz)) {
            seterr(err, errlen,
                   "section %u: note range 0x%llx-0x%llx runs past end of file (size 0x%zx)",
                   i, (unsigned long long)off, (unsigned long long)(off + sz), e->size);
            return -EINVAL;
        }
        char where[32];
        snprintf(where, sizeof(where), "section %u", i);
        uint32_t v = 0;
        int r = scan_notes(e, off, sz, align, where, &v, err, errlen);
        if (r < 0)
            return r;
        if (r > 0) {
            if (found && v != *entry) {
                seterr(err, errlen, "conflicting PHYS32_ENTRY notes (0x%x and 0x%x)",
                       *entry, v);
                return -EINVAL;
            }
            *entry = v;
            found = 1;
        }
    }
    return found;
}

int pvh_parse(const void *elf, size_t size, struct pvh_image *out,
              char *err, size_t errlen)
{
    struct elf_info e;
    int r = read_ehdr(elf, size, &e, err, errlen);
    if (r < 0)
        return r;

    uint64_t lo = UINT64_MAX, hi = 0;
    unsigned nload = 0;
    uint32_t entry = 0;
    bool have_entry = false;

    for (unsigned i = 0; i < e.phnum; i++) {
        struct phdr p;
        read_phdr(&e, i, &p);
        if (p.type == PT_NOTE) {
            if (!in_file(&e, p.offset, p.filesz)) {
                seterr(err, errlen,
                       "segment %u: note range 0x%llx-0x%llx runs past end of file (size 0x%zx)",
                       i, (unsigned long long)p.offset,
                       (unsigned long long)(p.offset + p.filesz), size);
                return -EINVAL;
            }
            char where[32];
            snprintf(where, sizeof(where), "segment %u", i);
            uint32_t v = 0;
            r = scan_notes(&e, p.offset, p.filesz, p.align, where, &v, err, errlen);
            if (r < 0)
                return r;
            if (r > 0) {
                if (have_entry && v != entry) {
                    seterr(err, errlen, "conflicting PHYS32_ENTRY notes (0x%x and 0x%x)",
                           entry, v);
                    return -EINVAL;
                }
                entry = v;
                have_entry = true;
            }
            continue;
        }
        if (p.type != PT_LOAD)
            continue;

        if (!in_file(&e, p.offset, p.filesz)) {
            seterr(err, errlen,
                   "segment %u: file range 0x%llx-0x%llx runs past end of file (size 0x%zx)",
                   i, (unsigned long long)p.offset,
                   (unsigned long long)(p.offset + p.filesz), size);
            return -EINVAL;
        }
        if (p.filesz > p.memsz) {
            seterr(err, errlen, "segment %u: file size 0x%llx exceeds memory size 0x%llx",
                   i, (unsigned long long)p.filesz, (unsigned long long)p.memsz);
            return -EINVAL;
        }
        if (p.paddr + p.memsz < p.paddr) {
            seterr(err, errlen,
                   "segment %u: physical address 0x%llx + memory size 0x%llx overflows",
                   i, (unsigned long long)p.paddr, (unsigned long long)p.memsz);
            return -EINVAL;
        }
        if (!e.is64 && p.paddr + p.memsz > PVH_4G) {
            seterr(err, errlen, "segment %u: physical range 0x%llx-0x%llx of an ELF32 "
                   "image runs past 4 GiB", i, (unsigned long long)p.paddr,
                   (unsigned long long)(p.paddr + p.memsz));
            return -EINVAL;
        }
        if (p.memsz == 0)
            continue;   /* occupies nothing; nothing to load or overlap */
        nload++;
        /* Compare with every earlier non-empty PT_LOAD (phnum is bounded, so O(n^2) is fine). */
        for (unsigned j = 0; j < i; j++) {
            struct phdr q;
            read_phdr(&e, j, &q);
            if (q.type != PT_LOAD || q.memsz == 0)
                continue;
            if (p.paddr < q.paddr + q.memsz && q.paddr < p.paddr + p.memsz) {
                seterr(err, errlen,
                       "segment %u: physical range 0x%llx-0x%llx overlaps segment %u "
                       "(0x%llx-0x%llx)", i, (unsigned long long)p.paddr,
                       (unsigned long long)(p.paddr + p.memsz), j,
                       (unsigned long long)q.paddr,
                       (unsigned long long)(q.paddr + q.memsz));
                return -EINVAL;
            }
        }
        if (p.paddr < lo)
            lo = p.paddr;
        if (p.paddr + p.memsz > hi)
            hi = p.paddr + p.memsz;
    }

    if (nload == 0) {
        seterr(err, errlen, "no PT_LOAD segment with a non-zero memory size");
        return -EINVAL;
    }
    if (!have_entry) {
        r = scan_note_sections(&e, &entry, err, errlen);
        if (r < 0)
            return r;
        have_entry = r > 0;
    }
    if (!have_entry) {
        seterr(err, errlen, "no Xen XEN_ELFNOTE_PHYS32_ENTRY note (not a PVH kernel)");
        return -EINVAL;
    }

    /* The entry must be code that is actually in the file, in an executable segment. */
    bool entry_ok = false;
    for (unsigned i = 0; i < e.phnum && !entry_ok; i++) {
        struct phdr p;
        read_phdr(&e, i, &p);
        if (p.type == PT_LOAD && (p.flags & PF_X) &&
            entry >= p.paddr && entry - p.paddr < p.filesz)
            entry_ok = true;
    }
    if (!entry_ok) {
        seterr(err, errlen,
               "PHYS32_ENTRY 0x%x is not inside the file contents of an executable PT_LOAD "
               "segment", entry);
        return -EINVAL;
    }

    if (out) {
        out->entry = entry;
        out->load_lo = lo;
        out->load_hi = hi;
    }
    return 0;
}

int pvh_load(const void *elf, size_t size, const struct pvh_image *img,
             const struct gphys *g, char *err, size_t errlen)
{
    struct pvh_image chk;
    struct elf_info e;

    /* Re-validate rather than trust that the caller kept the bytes unchanged. */
    int r = pvh_parse(elf, size, &chk, err, errlen);
    if (r < 0)
        return r;
    if (!img || chk.entry != img->entry || chk.load_lo != img->load_lo ||
        chk.load_hi != img->load_hi) {
        seterr(err, errlen, "image does not match the parsed description");
        return -EINVAL;
    }
    r = read_ehdr(elf, size, &e, err, errlen);
    if (r < 0)
        return r;

    /* Check every segment's destination first so that a failure writes nothing. */
    for (unsigned pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < e.phnum; i++) {
            struct phdr p;
            read_phdr(&e, i, &p);
            if (p.type != PT_LOAD || p.memsz == 0)
                continue;
            uint8_t *dst = gphys_ptr(g, p.paddr, p.memsz);
            if (!dst) {
                seterr(err, errlen,
                       "segment %u: physical range 0x%llx-0x%llx is not in guest memory",
                       i, (unsigned long long)p.paddr,
                       (unsigned long long)(p.paddr + p.memsz));
                return -EFAULT;
            }
            if (pass == 1) {
                memcpy(dst, e.data + p.offset, p.filesz);
                memset(dst + p.filesz, 0, p.memsz - p.filesz);
            }
        }
    }
    return 0;
}

static uint64_t align8(uint64_t x)
{
    return (x + 7) & ~UINT64_C(7);
}

/*
 * Layout from align8(at): hvm_start_info, the memory map (omitted if nr_map == 0:
 * memmap_paddr = 0), the command line (omitted if cmdline == NULL: cmdline_paddr = 0;
 * an empty string is written as a single NUL). Padding is zeroed. The kernel reads
 * all of it in 32-bit mode without paging, so everything must lie below 4 GiB too.
 */
int pvh_write_start_info(const struct gphys *g, uint64_t at, uint64_t limit,
                         const char *cmdline,
                         const struct hvm_memmap_table_entry *map, unsigned nr_map,
                         uint64_t *start_info_gpa, char *err, size_t errlen)
{
    if (limit > PVH_4G)
        limit = PVH_4G;
    if (at >= limit) {
        seterr(err, errlen, "start of start_info area 0x%llx is not below limit 0x%llx",
               (unsigned long long)at, (unsigned long long)limit);
        return -ENOSPC;
    }
    if (nr_map && !map) {
        seterr(err, errlen, "memory map of %u entries has no table", nr_map);
        return -EINVAL;
    }
    /* Everything is bounded by 4 GiB plus a few GiB of table/cmdline; no u64 overflow. */
    uint64_t si = align8(at);
    uint64_t mm = align8(si + sizeof(struct hvm_start_info));
    uint64_t mm_size = (uint64_t)nr_map * sizeof(struct hvm_memmap_table_entry);
    uint64_t cl = align8(mm + mm_size);
    uint64_t cl_size = cmdline ? (uint64_t)strlen(cmdline) + 1 : 0;
    if (cl_size > limit) {
        seterr(err, errlen, "command line of %llu bytes does not fit below 0x%llx",
               (unsigned long long)cl_size, (unsigned long long)limit);
        return -ENOSPC;
    }
    uint64_t end = cl + cl_size;
    if (end > limit) {
        seterr(err, errlen,
               "start_info, %u memory map entries and a %llu-byte command line need "
               "0x%llx-0x%llx, past limit 0x%llx", nr_map, (unsigned long long)cl_size,
               (unsigned long long)si, (unsigned long long)end,
               (unsigned long long)limit);
        return -ENOSPC;
    }
    uint8_t *base = gphys_ptr(g, si, end - si);
    if (!base) {
        seterr(err, errlen, "start_info area 0x%llx-0x%llx is not in guest memory",
               (unsigned long long)si, (unsigned long long)end);
        return -EFAULT;
    }
    memset(base, 0, end - si);

    struct hvm_start_info info = {
        .magic = XEN_HVM_START_MAGIC_VALUE,
        .version = 1,
        .nr_modules = 0,
        .cmdline_paddr = cmdline ? cl : 0,
        .rsdp_paddr = 0,
        .memmap_paddr = nr_map ? mm : 0,
        .memmap_entries = nr_map,
    };
    memcpy(base, &info, sizeof(info));
    for (unsigned i = 0; i < nr_map; i++) {
        struct hvm_memmap_table_entry ent = map[i];
        ent.reserved = 0;
        memcpy(base + (mm - si) + (uint64_t)i * sizeof(ent), &ent, sizeof(ent));
    }
    if (cmdline)
        memcpy(base + (cl - si), cmdline, cl_size);
    if (start_info_gpa)
        *start_info_gpa = si;
    return 0;
}

/* The modules themselves are the caller's to copy; this checks where they are. */
static int check_modules(const struct gphys *g, uint64_t tab, uint64_t tab_end,
                         const struct hvm_modlist_entry *mods, unsigned nr,
                         char *err, size_t errlen)
{
    for (unsigned i = 0; i < nr; i++) {
        uint64_t a = mods[i].paddr, n = mods[i].size;
        if (n == 0 || a >= PVH_4G || n > PVH_4G - a) {
            seterr(err, errlen, "module %u (%llu bytes at 0x%llx) is not below 4 GiB", i,
                   (unsigned long long)n, (unsigned long long)a);
            return -EINVAL;
        }
        if (a < tab_end && tab < a + n) {
            seterr(err, errlen, "module %u overlaps the module list at 0x%llx", i,
                   (unsigned long long)tab);
            return -EINVAL;
        }
        if (!gphys_ptr(g, a, n)) {
            seterr(err, errlen, "module %u (0x%llx-0x%llx) is not in guest memory", i,
                   (unsigned long long)a, (unsigned long long)(a + n));
            return -EFAULT;
        }
    }
    return 0;
}

int pvh_write_modules(const struct gphys *g, uint64_t start_info_gpa, uint64_t at,
                      const struct hvm_modlist_entry *mods, unsigned nr,
                      char *err, size_t errlen)
{
    struct hvm_start_info info;
    uint8_t *si = gphys_ptr(g, start_info_gpa, sizeof(info));
    if (!si || (memcpy(&info, si, sizeof(info)), info.magic != XEN_HVM_START_MAGIC_VALUE)) {
        seterr(err, errlen, "no hvm_start_info at 0x%llx", (unsigned long long)start_info_gpa);
        return -EINVAL;
    }
    if (nr == 0 || !mods || nr > 64) {
        seterr(err, errlen, "%u modules: 1 to 64 supported", nr);
        return -EINVAL;
    }
    uint64_t tab = align8(at), size = (uint64_t)nr * sizeof(struct hvm_modlist_entry);
    if (at >= PVH_4G || tab + size > PVH_4G) {
        seterr(err, errlen, "module list at 0x%llx is not below 4 GiB",
               (unsigned long long)at);
        return -ENOSPC;
    }
    int r = check_modules(g, tab, tab + size, mods, nr, err, errlen);
    if (r < 0)
        return r;
    uint8_t *dst = gphys_ptr(g, tab, size);
    if (!dst) {
        seterr(err, errlen, "module list 0x%llx-0x%llx is not in guest memory",
               (unsigned long long)tab, (unsigned long long)(tab + size));
        return -EFAULT;
    }
    for (unsigned i = 0; i < nr; i++) {
        struct hvm_modlist_entry e = mods[i];
        e.reserved = 0;
        memcpy(dst + (uint64_t)i * sizeof(e), &e, sizeof(e));
    }
    info.nr_modules = nr;
    info.modlist_paddr = tab;
    memcpy(si, &info, sizeof(info));
    return 0;
}
