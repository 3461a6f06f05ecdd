/* PVH loader: ELF validation, segment loading, hvm_start_info layout. */
#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xen/elfnote.h>

#include "harness.h"
#include "hv/pvh.h"

HARNESS_MAIN_STATE("pvh");

/* ---- flat-buffer guest memory ---- */

struct flat {
    uint8_t *mem;
    uint64_t base, size;
};

static void *flat_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    struct flat *f = opaque;
    if (gpa < f->base)
        return NULL;
    uint64_t off = gpa - f->base;
    if (off > f->size || len > f->size - off)
        return NULL;
    return f->mem + off;
}

#define MEM_BASE 0x100000u
#define MEM_SIZE 0x10000u
static uint8_t guest_mem[MEM_SIZE];
static struct flat flat_mem = { guest_mem, MEM_BASE, MEM_SIZE };
static const struct gphys gmem = { .ptr = flat_ptr, .opaque = &flat_mem };

/* ---- in-memory ELF builder ---- */

struct tseg {
    uint32_t type, flags;
    uint64_t paddr, filesz, memsz;
    uint8_t fill;                /* file bytes are fill, fill+1, ... */
};

struct tnote {
    const char *name;            /* NUL included in namesz */
    uint32_t type;
    const void *desc;
    uint32_t descsz;
};

struct img {
    uint8_t buf[16384];
    size_t size;
    bool is64;
    uint64_t seg_off[8];         /* file offset of each segment's bytes */
    uint64_t note_off, note_size;
};

/* ELF header fields both classes share, for tests that poke them. */
struct ehdr_fields {
    uint16_t type, machine, phentsize, phnum, shentsize, shnum;
    uint64_t phoff, shoff;
};

static void ehdr_get(const struct img *im, struct ehdr_fields *f)
{
    if (im->is64) {
        Elf64_Ehdr h;
        memcpy(&h, im->buf, sizeof(h));
        *f = (struct ehdr_fields){ h.e_type, h.e_machine, h.e_phentsize, h.e_phnum,
                                   h.e_shentsize, h.e_shnum, h.e_phoff, h.e_shoff };
    } else {
        Elf32_Ehdr h;
        memcpy(&h, im->buf, sizeof(h));
        *f = (struct ehdr_fields){ h.e_type, h.e_machine, h.e_phentsize, h.e_phnum,
                                   h.e_shentsize, h.e_shnum, h.e_phoff, h.e_shoff };
    }
}

static void ehdr_put(struct img *im, const struct ehdr_fields *f)
{
    if (im->is64) {
        Elf64_Ehdr h;
        memcpy(&h, im->buf, sizeof(h));
        h.e_type = f->type; h.e_machine = f->machine; h.e_phentsize = f->phentsize;
        h.e_phnum = f->phnum; h.e_shentsize = f->shentsize; h.e_shnum = f->shnum;
        h.e_phoff = f->phoff; h.e_shoff = f->shoff;
        memcpy(im->buf, &h, sizeof(h));
    } else {
        Elf32_Ehdr h;
        memcpy(&h, im->buf, sizeof(h));
        h.e_type = f->type; h.e_machine = f->machine; h.e_phentsize = f->phentsize;
        h.e_phnum = f->phnum; h.e_shentsize = f->shentsize; h.e_shnum = f->shnum;
        h.e_phoff = (uint32_t)f->phoff; h.e_shoff = (uint32_t)f->shoff;
        memcpy(im->buf, &h, sizeof(h));
    }
}

struct phdr_fields {
    uint32_t type, flags;
    uint64_t offset, paddr, filesz, memsz, align;
};

static size_t phdr_pos(const struct img *im, unsigned i)
{
    struct ehdr_fields f;
    ehdr_get(im, &f);
    return f.phoff + i * (im->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr));
}

static void phdr_get(const struct img *im, unsigned i, struct phdr_fields *p)
{
    size_t pos = phdr_pos(im, i);
    if (im->is64) {
        Elf64_Phdr h;
        memcpy(&h, im->buf + pos, sizeof(h));
        *p = (struct phdr_fields){ h.p_type, h.p_flags, h.p_offset, h.p_paddr,
                                   h.p_filesz, h.p_memsz, h.p_align };
    } else {
        Elf32_Phdr h;
        memcpy(&h, im->buf + pos, sizeof(h));
        *p = (struct phdr_fields){ h.p_type, h.p_flags, h.p_offset, h.p_paddr,
                                   h.p_filesz, h.p_memsz, h.p_align };
    }
}

static void phdr_put(struct img *im, unsigned i, const struct phdr_fields *p)
{
    size_t pos = phdr_pos(im, i);
    if (im->is64) {
        Elf64_Phdr h = { .p_type = p->type, .p_flags = p->flags, .p_offset = p->offset,
                         .p_vaddr = p->paddr | UINT64_C(0xffffffff80000000),
                         .p_paddr = p->paddr, .p_filesz = p->filesz,
                         .p_memsz = p->memsz, .p_align = p->align };
        memcpy(im->buf + pos, &h, sizeof(h));
    } else {
        Elf32_Phdr h = { .p_type = p->type, .p_flags = p->flags,
                         .p_offset = (uint32_t)p->offset, .p_vaddr = (uint32_t)p->paddr,
                         .p_paddr = (uint32_t)p->paddr, .p_filesz = (uint32_t)p->filesz,
                         .p_memsz = (uint32_t)p->memsz, .p_align = (uint32_t)p->align };
        memcpy(im->buf + pos, &h, sizeof(h));
    }
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

static size_t put_notes(uint8_t *p, const struct tnote *notes, unsigned n)
{
    size_t pos = 0;
    for (unsigned i = 0; i < n; i++) {
        Elf32_Nhdr h = { (uint32_t)strlen(notes[i].name) + 1, notes[i].descsz,
                         notes[i].type };
        memcpy(p + pos, &h, sizeof(h));
        pos += sizeof(h);
        memcpy(p + pos, notes[i].name, h.n_namesz);
        pos = align_up(pos + h.n_namesz, 4);
        memcpy(p + pos, notes[i].desc, h.n_descsz);
        pos = align_up(pos + h.n_descsz, 4);
    }
    return pos;
}

/*
 * Lay out: ELF header, program headers, segment bytes, notes, section headers (a null
 * section and one SHT_NOTE over the notes). A PT_NOTE entry in `segs` covers the notes.
 */
static void build(struct img *im, bool is64, const struct tseg *segs, unsigned nseg,
                  const struct tnote *notes, unsigned nnote)
{
    memset(im, 0, sizeof(*im));
    im->is64 = is64;
    size_t ehsz = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
    size_t phsz = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    size_t shsz = is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
    uint64_t pos = align_up(ehsz + nseg * phsz, 16);

    for (unsigned i = 0; i < nseg; i++) {
        if (segs[i].type == PT_NOTE)
            continue;
        im->seg_off[i] = pos;
        for (uint64_t k = 0; k < segs[i].filesz; k++)
            im->buf[pos + k] = (uint8_t)(segs[i].fill + k);
        pos = align_up(pos + segs[i].filesz, 16);
    }
    im->note_off = pos;
    im->note_size = put_notes(im->buf + pos, notes, nnote);
    pos = align_up(pos + im->note_size, 16);
    uint64_t shoff = pos;
    pos += 2 * shsz;
    im->size = pos;

    uint8_t ident[EI_NIDENT] = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3,
                                 is64 ? ELFCLASS64 : ELFCLASS32, ELFDATA2LSB, EV_CURRENT };
    if (is64) {
        Elf64_Ehdr h = { .e_type = ET_EXEC, .e_machine = EM_X86_64,
                         .e_version = EV_CURRENT, .e_entry = 0xffffffff81000000,
                         .e_phoff = ehsz, .e_shoff = shoff, .e_ehsize = ehsz,
                         .e_phentsize = phsz, .e_phnum = nseg, .e_shentsize = shsz,
                         .e_shnum = 2 };
        memcpy(h.e_ident, ident, EI_NIDENT);
        memcpy(im->buf, &h, sizeof(h));
        Elf64_Shdr sh = { .sh_type = SHT_NOTE, .sh_offset = im->note_off,
                          .sh_size = im->note_size, .sh_addralign = 4 };
        memcpy(im->buf + shoff + shsz, &sh, sizeof(sh));
    } else {
        Elf32_Ehdr h = { .e_type = ET_EXEC, .e_machine = EM_386,
                         .e_version = EV_CURRENT, .e_entry = 0x100000,
                         .e_phoff = ehsz, .e_shoff = shoff, .e_ehsize = ehsz,
                         .e_phentsize = phsz, .e_phnum = nseg, .e_shentsize = shsz,
                         .e_shnum = 2 };
        memcpy(h.e_ident, ident, EI_NIDENT);
        memcpy(im->buf, &h, sizeof(h));
        Elf32_Shdr sh = { .sh_type = SHT_NOTE, .sh_offset = im->note_off,
                          .sh_size = im->note_size, .sh_addralign = 4 };
        memcpy(im->buf + shoff + shsz, &sh, sizeof(sh));
    }
    for (unsigned i = 0; i < nseg; i++) {
        struct phdr_fields p = { segs[i].type, segs[i].flags, im->seg_off[i],
                                 segs[i].paddr, segs[i].filesz, segs[i].memsz, 16 };
        if (segs[i].type == PT_NOTE)
            p = (struct phdr_fields){ PT_NOTE, PF_R, im->note_off, 0, im->note_size,
                                      im->note_size, 4 };
        phdr_put(im, i, &p);
    }
}

#define ENTRY 0x100010u
static const uint32_t entry32 = ENTRY;
static const char guest_os[] = "linux";

/* Text (RX, entry inside), data+bss (RW), a PT_NOTE with an unrelated note first. */
static const struct tseg std_segs[] = {
    { PT_LOAD, PF_R | PF_X, 0x100000, 0x200, 0x200, 0x10 },
    { PT_LOAD, PF_R | PF_W, 0x101000, 0x80, 0x1000, 0x80 },
    { PT_NOTE, 0, 0, 0, 0, 0 },
};
static const struct tnote std_notes[] = {
    { "Xen", XEN_ELFNOTE_GUEST_OS, guest_os, sizeof(guest_os) },
    { "GNU", 3, "\x01\x02\x03\x04\x05", 5 },
    { "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &entry32, 4 },
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void build_std(struct img *im, bool is64)
{
    build(im, is64, std_segs, N(std_segs), std_notes, N(std_notes));
}

static char errbuf[256];

static int parse(const struct img *im, struct pvh_image *out)
{
    errbuf[0] = '\0';
    return pvh_parse(im->buf, im->size, out, errbuf, sizeof(errbuf));
}

/* Expect rejection with a message containing `what`. */
#define CHECK_REJECT(im, what) do { \
    struct pvh_image _o; \
    CHECK_EQ(parse(im, &_o), -EINVAL); \
    CHECK_STR_CONTAINS(errbuf, what); \
} while (0)

/* ---- acceptance and loading ---- */

static void check_accept(bool is64)
{
    struct img im;
    struct pvh_image out;
    build_std(&im, is64);
    int r = parse(&im, &out);
    CHECK_MSG(r == 0, "parse failed: %s", errbuf);
    CHECK_EQ(out.entry, ENTRY);
    CHECK_EQ(out.load_lo, 0x100000);
    CHECK_EQ(out.load_hi, 0x102000);
}

static void accept_elf32(void) { check_accept(false); }
static void accept_elf64(void) { check_accept(true); }

static void check_load(bool is64)
{
    struct img im;
    struct pvh_image out;
    build_std(&im, is64);
    REQUIRE(parse(&im, &out) == 0);
    memset(guest_mem, 0xaa, sizeof(guest_mem));
    int r = pvh_load(im.buf, im.size, &out, &gmem, errbuf, sizeof(errbuf));
    REQUIRE(r == 0);
    /* text: bytes 0x10, 0x11, ... */
    for (unsigned k = 0; k < 0x200; k++)
        CHECK_EQ(guest_mem[k], (uint8_t)(0x10 + k));
    CHECK_EQ(guest_mem[0x200], 0xaa);      /* gap between segments untouched */
    CHECK_EQ(guest_mem[0xfff], 0xaa);
    for (unsigned k = 0; k < 0x80; k++)
        CHECK_EQ(guest_mem[0x1000 + k], (uint8_t)(0x80 + k));
    for (unsigned k = 0x80; k < 0x1000; k++)
        CHECK_EQ(guest_mem[0x1000 + k], 0);  /* bss zeroed */
    CHECK_EQ(guest_mem[0x2000], 0xaa);
}

static void load_elf32(void) { check_load(false); }
static void load_elf64(void) { check_load(true); }

static void load_outside_memory(void)
{
    /* second segment ends past guest memory: nothing at all may be written */
    struct tseg segs[3];
    memcpy(segs, std_segs, sizeof(segs));
    segs[1].paddr = MEM_BASE + MEM_SIZE - 0x800;
    struct img im;
    struct pvh_image out;
    build(&im, true, segs, 3, std_notes, N(std_notes));
    REQUIRE(parse(&im, &out) == 0);
    memset(guest_mem, 0xaa, sizeof(guest_mem));
    int r = pvh_load(im.buf, im.size, &out, &gmem, errbuf, sizeof(errbuf));
    CHECK_EQ(r, -EFAULT);
    CHECK_STR_CONTAINS(errbuf, "segment 1");
    CHECK_STR_CONTAINS(errbuf, "not in guest memory");
    CHECK_EQ(guest_mem[0], 0xaa);
}

static void load_mismatched_image(void)
{
    struct img im;
    struct pvh_image out;
    build_std(&im, false);
    REQUIRE(parse(&im, &out) == 0);
    out.entry++;
    CHECK_EQ(pvh_load(im.buf, im.size, &out, &gmem, errbuf, sizeof(errbuf)), -EINVAL);
    CHECK_EQ(pvh_load(im.buf, im.size, NULL, &gmem, errbuf, sizeof(errbuf)), -EINVAL);
}

static void note_desc64(void)
{
    uint64_t e64 = ENTRY;
    struct tnote notes[] = { { "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &e64, 8 } };
    struct img im;
    struct pvh_image out;
    build(&im, true, std_segs, N(std_segs), notes, 1);
    CHECK_EQ(parse(&im, &out), 0);
    CHECK_EQ(out.entry, ENTRY);

    e64 = ENTRY | (UINT64_C(1) << 32);
    build(&im, true, std_segs, N(std_segs), notes, 1);
    CHECK_REJECT(&im, "not below 4 GiB");
}

static void note_bad_size(void)
{
    uint16_t e16 = 0x10;
    struct tnote notes[] = { { "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &e16, 2 } };
    struct img im;
    build(&im, false, std_segs, N(std_segs), notes, 1);
    CHECK_REJECT(&im, "descriptor size 2");
}

static void note_wrong_name_ignored(void)
{
    /* a PHYS32_ENTRY-typed note from another vendor is not ours */
    struct tnote notes[] = { { "Xe", XEN_ELFNOTE_PHYS32_ENTRY, &entry32, 4 },
                             { "XenX", XEN_ELFNOTE_PHYS32_ENTRY, &entry32, 4 } };
    struct img im;
    build(&im, false, std_segs, N(std_segs), notes, 2);
    struct ehdr_fields f;
    ehdr_get(&im, &f);
    f.shoff = 0;
    ehdr_put(&im, &f);
    CHECK_REJECT(&im, "no Xen XEN_ELFNOTE_PHYS32_ENTRY note");
}

static void note_conflicting(void)
{
    uint32_t other = ENTRY + 4;
    struct tnote notes[] = { { "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &entry32, 4 },
                             { "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &other, 4 } };
    struct img im;
    build(&im, false, std_segs, N(std_segs), notes, 2);
    CHECK_REJECT(&im, "conflicting");
    /* the same value twice is fine */
    notes[1].desc = &entry32;
    build(&im, false, std_segs, N(std_segs), notes, 2);
    CHECK_EQ(parse(&im, NULL), 0);
}

static void note_truncated(void)
{
    struct img im;
    build_std(&im, true);
    struct phdr_fields p;
    phdr_get(&im, 2, &p);
    p.filesz -= 2;        /* last note's descriptor cut short */
    phdr_put(&im, 2, &p);
    CHECK_REJECT(&im, "runs past the end of the note area");
    p.filesz = 6;         /* not even a note header */
    phdr_put(&im, 2, &p);
    CHECK_REJECT(&im, "truncated note header");
}

static void note_segment_past_eof(void)
{
    struct img im;
    build_std(&im, false);
    struct phdr_fields p;
    phdr_get(&im, 2, &p);
    p.offset = im.size - 4;
    phdr_put(&im, 2, &p);
    CHECK_REJECT(&im, "segment 2: note range");
}

static void note_in_section_only(void)
{
    struct img im;
    struct pvh_image out;
    build_std(&im, true);
    struct phdr_fields p;
    phdr_get(&im, 2, &p);
    p.type = PT_NULL;
    phdr_put(&im, 2, &p);
    CHECK_EQ(parse(&im, &out), 0);
    CHECK_EQ(out.entry, ENTRY);

    /* without section headers there is nothing left to find */
    struct ehdr_fields f;
    ehdr_get(&im, &f);
    f.shoff = 0;
    ehdr_put(&im, &f);
    CHECK_REJECT(&im, "no Xen XEN_ELFNOTE_PHYS32_ENTRY note");

    /* section headers that run out of the file */
    f.shoff = im.size - 8;
    ehdr_put(&im, &f);
    CHECK_REJECT(&im, "section headers");
    f.shoff = im.size - 2 * (im.is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr));
    f.shentsize = 12;
    ehdr_put(&im, &f);
    CHECK_REJECT(&im, "section header entry size");
}

static void note_section_past_eof(void)
{
    struct img im;
    build_std(&im, false);
    struct phdr_fields p;
    phdr_get(&im, 2, &p);
    p.type = PT_NULL;
    phdr_put(&im, 2, &p);
    struct ehdr_fields f;
    ehdr_get(&im, &f);
    Elf32_Shdr sh;
    memcpy(&sh, im.buf + f.shoff + sizeof(sh), sizeof(sh));
    sh.sh_size = 0x10000;
    memcpy(im.buf + f.shoff + sizeof(sh), &sh, sizeof(sh));
    CHECK_REJECT(&im, "section 1: note range");
}

/* ---- header rejections ---- */

static void reject_ident(void)
{
    struct img im;
    build_std(&im, false);
    CHECK_EQ(pvh_parse(im.buf, 10, NULL, errbuf, sizeof(errbuf)), -EINVAL);
    CHECK_STR_CONTAINS(errbuf, "too small");
    CHECK_EQ(pvh_parse(im.buf, 40, NULL, errbuf, sizeof(errbuf)), -EINVAL);
    CHECK_STR_CONTAINS(errbuf, "ELF32 header");
    CHECK_EQ(pvh_parse(NULL, 0, NULL, errbuf, sizeof(errbuf)), -EINVAL);

    im.buf[1] = 'X';
    CHECK_REJECT(&im, "bad magic");
    build_std(&im, false);
    im.buf[EI_CLASS] = 3;
    CHECK_REJECT(&im, "class 3");
    build_std(&im, false);
    im.buf[EI_DATA] = ELFDATA2MSB;
    CHECK_REJECT(&im, "not little endian");
    build_std(&im, false);
    im.buf[EI_VERSION] = 2;
    CHECK_REJECT(&im, "ident version");
}

static void reject_type_machine(void)
{
    for (int c = 0; c < 2; c++) {
        struct img im;
        struct ehdr_fields f;
        build_std(&im, c);
        ehdr_get(&im, &f);
        f.type = ET_DYN;
        ehdr_put(&im, &f);
        CHECK_REJECT(&im, "not ET_EXEC");

        build_std(&im, c);
        ehdr_get(&im, &f);
        f.machine = EM_AARCH64;
        ehdr_put(&im, &f);
        CHECK_REJECT(&im, "not x86");

        /* both x86 machines are fine in either class */
        build_std(&im, c);
        ehdr_get(&im, &f);
        f.machine = c ? EM_386 : EM_X86_64;
        ehdr_put(&im, &f);
        CHECK_EQ(parse(&im, NULL), 0);
    }
}

static void reject_phdr_table(void)
{
    for (int c = 0; c < 2; c++) {
        struct img im;
        struct ehdr_fields f;
        build_std(&im, c);
        ehdr_get(&im, &f);
        f.phnum = 0;
        ehdr_put(&im, &f);
        CHECK_REJECT(&im, "no program headers");

        f.phnum = PN_XNUM;
        ehdr_put(&im, &f);
        CHECK_REJECT(&im, "too many program headers");

        f.phnum = 129;
        ehdr_put(&im, &f);
        CHECK_REJECT(&im, "too many program headers");

        build_std(&im, c);
        ehdr_get(&im, &f);
        f.phentsize++;
        ehdr_put(&im, &f);
        CHECK_REJECT(&im, "program header entry size");

        build_std(&im, c);
        ehdr_get(&im, &f);
        f.phoff = im.size - 8;
        ehdr_put(&im, &f);
        CHECK_REJECT(&im, "run past end of file");

        f.phoff = c ? UINT64_MAX - 8 : UINT32_MAX;
        ehdr_put(&im, &f);
        CHECK_REJECT(&im, "run past end of file");
    }
}

/* ---- segment rejections ---- */

static void reject_segment_past_eof(void)
{
    struct img im;
    build_std(&im, true);
    struct phdr_fields p;
    phdr_get(&im, 1, &p);
    p.filesz = im.size;          /* offset + filesz > size */
    p.memsz = im.size;
    phdr_put(&im, 1, &p);
    CHECK_REJECT(&im, "segment 1: file range");
    CHECK_STR_CONTAINS(errbuf, "runs past end of file");

    p.offset = UINT64_MAX - 4;   /* offset + filesz wraps */
    p.filesz = 0x10;
    phdr_put(&im, 1, &p);
    CHECK_REJECT(&im, "segment 1: file range");
}

static void reject_filesz_gt_memsz(void)
{
    struct img im;
    build_std(&im, false);
    struct phdr_fields p;
    phdr_get(&im, 0, &p);
    p.memsz = p.filesz - 1;
    phdr_put(&im, 0, &p);
    CHECK_REJECT(&im, "segment 0: file size 0x200 exceeds memory size 0x1ff");
}

static void reject_paddr_overflow(void)
{
    struct img im;
    build_std(&im, true);
    struct phdr_fields p;
    phdr_get(&im, 1, &p);
    p.paddr = UINT64_MAX - 0x100;
    phdr_put(&im, 1, &p);
    CHECK_REJECT(&im, "overflows");

    build_std(&im, false);
    phdr_get(&im, 1, &p);
    p.paddr = 0xfffff000;        /* ELF32: 0xfffff000 + 0x1000 is exactly 4 GiB: fine */
    phdr_put(&im, 1, &p);
    CHECK_EQ(parse(&im, NULL), 0);
    p.paddr = 0xfffff800;
    phdr_put(&im, 1, &p);
    CHECK_REJECT(&im, "runs past 4 GiB");
}

static void reject_overlap(void)
{
    for (int c = 0; c < 2; c++) {
        struct img im;
        build_std(&im, c);
        struct phdr_fields p;
        phdr_get(&im, 1, &p);
        p.paddr = 0x1001ff;      /* last byte of text */
        phdr_put(&im, 1, &p);
        CHECK_REJECT(&im, "segment 1: physical range 0x1001ff-0x1011ff overlaps segment 0");

        p.paddr = 0x100200;      /* adjacent: fine */
        phdr_put(&im, 1, &p);
        CHECK_EQ(parse(&im, NULL), 0);

        p.paddr = 0xff000;       /* contains all of text */
        p.memsz = 0x2000;
        phdr_put(&im, 1, &p);
        CHECK_REJECT(&im, "overlaps segment 0");
    }
}

static void empty_segments_ignored(void)
{
    /* memsz == 0 segments occupy nothing and may sit anywhere */
    struct tseg segs[4];
    memcpy(segs, std_segs, sizeof(std_segs));
    segs[3] = (struct tseg){ PT_LOAD, PF_R, 0x100100, 0, 0, 0 };
    struct img im;
    struct pvh_image out;
    build(&im, true, segs, 4, std_notes, N(std_notes));
    CHECK_EQ(parse(&im, &out), 0);
    CHECK_EQ(out.load_hi, 0x102000);
    memset(guest_mem, 0, sizeof(guest_mem));
    CHECK_EQ(pvh_load(im.buf, im.size, &out, &gmem, errbuf, sizeof(errbuf)), 0);
}

static void reject_no_load(void)
{
    struct img im;
    build_std(&im, false);
    struct phdr_fields p;
    for (unsigned i = 0; i < 2; i++) {
        phdr_get(&im, i, &p);
        p.type = PT_NULL;
        phdr_put(&im, i, &p);
    }
    CHECK_REJECT(&im, "no PT_LOAD");
}

static void reject_no_note(void)
{
    struct tnote notes[] = { std_notes[0] };
    struct img im;
    build(&im, true, std_segs, N(std_segs), notes, 1);
    CHECK_REJECT(&im, "no Xen XEN_ELFNOTE_PHYS32_ENTRY note");
}

static void reject_bad_entry(void)
{
    uint32_t e;
    struct tnote notes[] = { { "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &e, 4 } };
    struct img im;
    struct pvh_image out;

    e = 0x100000;                /* first byte of text: fine */
    build(&im, false, std_segs, N(std_segs), notes, 1);
    CHECK_EQ(parse(&im, &out), 0);
    e = 0x1001ff;                /* last byte of text: fine */
    build(&im, false, std_segs, N(std_segs), notes, 1);
    CHECK_EQ(parse(&im, &out), 0);

    e = 0x100200;                /* just past text */
    build(&im, false, std_segs, N(std_segs), notes, 1);
    CHECK_REJECT(&im, "PHYS32_ENTRY 0x100200 is not inside");
    e = 0x101010;                /* data: not executable */
    build(&im, false, std_segs, N(std_segs), notes, 1);
    CHECK_REJECT(&im, "not inside");
    e = 0xfff00;                 /* below everything */
    build(&im, true, std_segs, N(std_segs), notes, 1);
    CHECK_REJECT(&im, "not inside");

    /* in the bss of an executable segment: not code from the file */
    struct tseg segs[3];
    memcpy(segs, std_segs, sizeof(segs));
    segs[1].flags = PF_R | PF_W | PF_X;
    e = 0x101800;
    build(&im, true, segs, 3, notes, 1);
    CHECK_REJECT(&im, "not inside");
    e = 0x101010;
    build(&im, true, segs, 3, notes, 1);
    CHECK_EQ(parse(&im, &out), 0);
}

static void note_align8(void)
{
    /* ELF64 note area aligned to 8: descriptor padded to 8 */
    struct img im;
    build_std(&im, true);
    uint8_t *p = im.buf + im.note_off;
    memset(p, 0, 64);
    Elf64_Nhdr h = { 4, 8, XEN_ELFNOTE_PHYS32_ENTRY };
    memcpy(p, &h, sizeof(h));
    memcpy(p + 12, "Xen", 4);
    uint64_t e64 = ENTRY;
    memcpy(p + 16, &e64, 8);      /* name padded to 8: 12 + 4 = 16 */
    struct phdr_fields ph;
    phdr_get(&im, 2, &ph);
    ph.filesz = 24;
    ph.align = 8;
    phdr_put(&im, 2, &ph);
    struct pvh_image out;
    CHECK_EQ(parse(&im, &out), 0);
    CHECK_EQ(out.entry, ENTRY);
}

/* Deterministic mutations of valid images: parse and load must never misbehave. */
static void mutation_smoke(void)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int c = 0; c < 2; c++) {
        for (int iter = 0; iter < 20000; iter++) {
            struct img im;
            build_std(&im, c);
            unsigned nmut = 1 + iter % 4;
            for (unsigned m = 0; m < nmut; m++) {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                size_t pos = (s >> 8) % (im.size < 256 ? im.size : 256);
                im.buf[pos] = (uint8_t)s;
            }
            struct pvh_image out;
            if (pvh_parse(im.buf, im.size, &out, errbuf, sizeof(errbuf)) == 0) {
                CHECK(out.load_lo < out.load_hi);
                pvh_load(im.buf, im.size, &out, &gmem, errbuf, sizeof(errbuf));
            } else {
                CHECK(errbuf[0] != '\0');
            }
        }
    }
}

/* ---- hvm_start_info ---- */

static void start_info_layout(void)
{
    struct hvm_memmap_table_entry map[2] = {
        { 0, 0x9f000, XEN_HVM_MEMMAP_TYPE_RAM, 0x55 },   /* reserved is cleared */
        { 0x100000, 0x7f00000, XEN_HVM_MEMMAP_TYPE_RAM, 0 },
    };
    const char *cmd = "console=hvc0 root=/dev/xvda";
    uint64_t si = 0;
    memset(guest_mem, 0xaa, sizeof(guest_mem));
    int r = pvh_write_start_info(&gmem, MEM_BASE + 0x1003, MEM_BASE + MEM_SIZE, cmd, map, 2,
                                 &si, errbuf, sizeof(errbuf));
    REQUIRE(r == 0);
    CHECK_EQ(si, MEM_BASE + 0x1008);      /* aligned up to 8 */
    CHECK_EQ(guest_mem[0x1003], 0xaa);    /* nothing below si touched */

    struct hvm_start_info info;
    memcpy(&info, guest_mem + 0x1008, sizeof(info));
    CHECK_EQ(info.magic, XEN_HVM_START_MAGIC_VALUE);
    CHECK_EQ(info.version, 1);
    CHECK_EQ(info.flags, 0);
    CHECK_EQ(info.nr_modules, 0);
    CHECK_EQ(info.modlist_paddr, 0);
    CHECK_EQ(info.rsdp_paddr, 0);
    CHECK_EQ(info.reserved, 0);
    CHECK_EQ(info.memmap_entries, 2);
    CHECK_EQ(info.memmap_paddr, si + sizeof(info));
    CHECK_EQ(info.memmap_paddr % 8, 0);
    CHECK_EQ(info.cmdline_paddr, info.memmap_paddr + 2 * sizeof(map[0]));
    CHECK_EQ(info.cmdline_paddr % 8, 0);

    struct hvm_memmap_table_entry got[2];
    memcpy(got, guest_mem + (info.memmap_paddr - MEM_BASE), sizeof(got));
    CHECK_EQ(got[0].addr, 0);
    CHECK_EQ(got[0].size, 0x9f000);
    CHECK_EQ(got[0].type, XEN_HVM_MEMMAP_TYPE_RAM);
    CHECK_EQ(got[0].reserved, 0);
    CHECK_EQ(got[1].addr, 0x100000);
    CHECK_EQ(got[1].size, 0x7f00000);
    const char *gc = (const char *)guest_mem + (info.cmdline_paddr - MEM_BASE);
    CHECK(strcmp(gc, cmd) == 0);
    CHECK_EQ(gc[strlen(cmd) + 1], (char)0xaa);   /* nothing written past the NUL */
}

static void start_info_cmdline_variants(void)
{
    uint64_t si;
    struct hvm_start_info info;

    memset(guest_mem, 0xaa, sizeof(guest_mem));
    REQUIRE(pvh_write_start_info(&gmem, MEM_BASE, MEM_BASE + MEM_SIZE, "", NULL, 0, &si,
                                 errbuf, sizeof(errbuf)) == 0);
    memcpy(&info, guest_mem, sizeof(info));
    CHECK_EQ(info.memmap_entries, 0);
    CHECK_EQ(info.memmap_paddr, 0);
    CHECK_EQ(info.cmdline_paddr, MEM_BASE + sizeof(info));
    CHECK_EQ(guest_mem[sizeof(info)], 0);
    CHECK_EQ(guest_mem[sizeof(info) + 1], 0xaa);

    memset(guest_mem, 0xaa, sizeof(guest_mem));
    REQUIRE(pvh_write_start_info(&gmem, MEM_BASE, MEM_BASE + MEM_SIZE, NULL, NULL, 0, &si,
                                 errbuf, sizeof(errbuf)) == 0);
    memcpy(&info, guest_mem, sizeof(info));
    CHECK_EQ(info.cmdline_paddr, 0);
    CHECK_EQ(guest_mem[sizeof(info)], 0xaa);
}

static void start_info_enospc(void)
{
    struct hvm_memmap_table_entry map[3] = { { 0, 0x1000, 1, 0 } };
    const char *cmd = "abc";
    uint64_t at = MEM_BASE + 0x100;
    uint64_t need = sizeof(struct hvm_start_info) + sizeof(map) + 4;
    uint64_t si;

    CHECK_EQ(pvh_write_start_info(&gmem, at, at + need, cmd, map, 3, &si,
                                  errbuf, sizeof(errbuf)), 0);
    CHECK_EQ(pvh_write_start_info(&gmem, at, at + need - 1, cmd, map, 3, &si,
                                  errbuf, sizeof(errbuf)), -ENOSPC);
    CHECK_STR_CONTAINS(errbuf, "past limit");
    CHECK_EQ(pvh_write_start_info(&gmem, at, at, cmd, map, 3, &si,
                                  errbuf, sizeof(errbuf)), -ENOSPC);
    CHECK_EQ(pvh_write_start_info(&gmem, at, at - 1, cmd, map, 3, &si,
                                  errbuf, sizeof(errbuf)), -ENOSPC);
    /* a huge memory map cannot wrap the arithmetic */
    CHECK_EQ(pvh_write_start_info(&gmem, at, UINT64_MAX, cmd, map, UINT32_MAX, &si,
                                  errbuf, sizeof(errbuf)), -ENOSPC);
    /* near the top of the address space: limit is clipped to 4 GiB */
    CHECK_EQ(pvh_write_start_info(&gmem, UINT64_MAX - 4, UINT64_MAX, cmd, map, 3, &si,
                                  errbuf, sizeof(errbuf)), -ENOSPC);
    CHECK_EQ(pvh_write_start_info(&gmem, 0xffffffe0, UINT64_MAX, cmd, map, 3, &si,
                                  errbuf, sizeof(errbuf)), -ENOSPC);
}

static void start_info_efault(void)
{
    uint64_t si = 0x1234;
    /* fits below limit, but runs past populated memory */
    CHECK_EQ(pvh_write_start_info(&gmem, MEM_BASE + MEM_SIZE - 16, MEM_BASE + 2 * MEM_SIZE,
                                  "x", NULL, 0, &si, errbuf, sizeof(errbuf)), -EFAULT);
    CHECK_STR_CONTAINS(errbuf, "not in guest memory");
    CHECK_EQ(si, 0x1234);
    CHECK_EQ(pvh_write_start_info(&gmem, 0x1000, 0x2000, "x", NULL, 0, &si,
                                  errbuf, sizeof(errbuf)), -EFAULT);
}

/* ---- a real kernel, if one was built ---- */

/* Parse a kernel file and load it into a buffer covering exactly its footprint. */
static void check_real_kernel(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f, "cannot open %s", path);
    if (!f)
        return;
    struct stat st;
    uint8_t *data = NULL;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && st.st_size < (64 << 20))
        data = malloc((size_t)st.st_size);
    size_t n = data ? fread(data, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    CHECK_MSG(data && n == (size_t)st.st_size, "cannot read %s", path);
    if (data && n == (size_t)st.st_size) {
        struct pvh_image out;
        int r = pvh_parse(data, n, &out, errbuf, sizeof(errbuf));
        CHECK_MSG(r == 0, "%s: %s", path, errbuf);
        if (r == 0) {
            CHECK(out.entry >= out.load_lo && out.entry < out.load_hi);
            uint64_t span = out.load_hi - out.load_lo;
            CHECK_MSG(span <= (64 << 20), "%s: footprint 0x%llx", path,
                      (unsigned long long)span);
            struct flat fm = { span <= (64 << 20) ? calloc(1, span) : NULL,
                               out.load_lo, span };
            struct gphys g = { .ptr = flat_ptr, .opaque = &fm };
            if (fm.mem) {
                r = pvh_load(data, n, &out, &g, errbuf, sizeof(errbuf));
                CHECK_MSG(r == 0, "%s: %s", path, errbuf);
                free(fm.mem);
            }
        }
    }
    free(data);
}

static int readable(const char *path)
{
    return path && access(path, R_OK) == 0;
}

/* The project's own test guest, once built. */
static void real_guest_kernel(void)
{
    static char path[4096];
    const char *b = getenv("XKVM_BUILD");
    const char *cands[3] = { getenv("XKVM_GUEST"), NULL, "guest/xkvm-guest" };
    if (b) {
        snprintf(path, sizeof(path), "%s/guest/xkvm-guest", b);
        cands[1] = path;
    }
    for (int i = 0; i < 3; i++) {
        if (readable(cands[i])) {
            check_real_kernel(cands[i]);
            return;
        }
    }
    harness_skip("no test guest kernel (set XKVM_GUEST or build guest/xkvm-guest)");
}

/* Xen's PV shim is a real PVH kernel (ELF32, PHYS32_ENTRY); Debian ships it. */
static void real_xen_shim(void)
{
    glob_t gl;
    if (glob("/usr/lib/xen-*/boot/xen-shim", 0, NULL, &gl) != 0) {
        harness_skip("no /usr/lib/xen-*/boot/xen-shim (Debian xen-hypervisor-common)");
        return;
    }
    for (size_t i = 0; i < gl.gl_pathc; i++)
        check_real_kernel(gl.gl_pathv[i]);
    globfree(&gl);
}

int main(void)
{
    RUN_TEST(accept_elf32);
    RUN_TEST(accept_elf64);
    RUN_TEST(load_elf32);
    RUN_TEST(load_elf64);
    RUN_TEST(load_outside_memory);
    RUN_TEST(load_mismatched_image);
    RUN_TEST(note_desc64);
    RUN_TEST(note_bad_size);
    RUN_TEST(note_wrong_name_ignored);
    RUN_TEST(note_conflicting);
    RUN_TEST(note_truncated);
    RUN_TEST(note_segment_past_eof);
    RUN_TEST(note_in_section_only);
    RUN_TEST(note_section_past_eof);
    RUN_TEST(note_align8);
    RUN_TEST(reject_ident);
    RUN_TEST(reject_type_machine);
    RUN_TEST(reject_phdr_table);
    RUN_TEST(reject_segment_past_eof);
    RUN_TEST(reject_filesz_gt_memsz);
    RUN_TEST(reject_paddr_overflow);
    RUN_TEST(reject_overlap);
    RUN_TEST(empty_segments_ignored);
    RUN_TEST(reject_no_load);
    RUN_TEST(reject_no_note);
    RUN_TEST(reject_bad_entry);
    RUN_TEST(mutation_smoke);
    RUN_TEST(start_info_layout);
    RUN_TEST(start_info_cmdline_variants);
    RUN_TEST(start_info_enospc);
    RUN_TEST(start_info_efault);
    RUN_TEST(real_guest_kernel);
    RUN_TEST(real_xen_shim);
    HARNESS_EXIT();
}
