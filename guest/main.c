/*
 * Boot in C: traps, Xen, start_info, command line, then the selected test and its
 * one result line, then shutdown.
 */
#include "guest.h"
#include "xtest.h"

struct boot_info boot;
const char *xtest_name = "boot";
static char cmdline_copy[1024];

static void reserve(uint64_t start, uint64_t end, const char *what)
{
    if (end <= start || boot.nr_reserved == MAX_RESERVED)
        return;
    boot.reserved[boot.nr_reserved++] = (struct mem_region){
        start & ~(PAGE_SIZE - 1), (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1), what,
    };
}

/* ---- command line --------------------------------------------------------------- */
bool cmdline_get(const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);

    for (const char *p = boot.cmdline; *p;) {
        while (*p == ' ')
            p++;
        const char *tok = p;
        while (*p && *p != ' ')
            p++;
        size_t tlen = p - tok;

        if (tlen < klen || strncmp(tok, key, klen) || (tlen > klen && tok[klen] != '='))
            continue;
        const char *v = tlen > klen ? tok + klen + 1 : tok + tlen;
        size_t vlen = p - v;

        if (outlen) {
            if (vlen >= outlen)
                vlen = outlen - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
        }
        return true;
    }
    return false;
}

uint64_t cmdline_get_u64(const char *key, uint64_t def)
{
    char buf[32];

    if (!cmdline_get(key, buf, sizeof(buf)) || !buf[0])
        return def;
    return strtou64(buf, NULL);
}

/* ---- verdicts --------------------------------------------------------------------- */
void xtest_result(bool pass, const char *fmt, va_list ap)
{
    char reason[256];

    if (pass) {
        printf("xtest: %s: PASS\n", xtest_name);
        return;
    }
    vsnprintf(reason, sizeof(reason), fmt, ap);
    for (char *c = reason; *c; c++)       /* the verdict is one line */
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    printf("xtest: %s: FAIL: %s\n", xtest_name, reason);
}

static bool verdict_given;

static noreturn void verdict(bool crash, const char *fmt, va_list ap)
{
    if (!verdict_given) {       /* a fault while reporting must not print twice */
        verdict_given = true;
        xtest_result(false, fmt, ap);
    }
    shutdown(crash ? SHUTDOWN_crash : SHUTDOWN_poweroff);
}

void xtest_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verdict(false, fmt, ap);
}

void xtest_crash(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verdict(true, fmt, ap);
}

/* ---- start_info ------------------------------------------------------------------- */
static const char *parse_start_info(uint64_t si_pa)
{
    const struct hvm_start_info *si = (const void *)(uintptr_t)si_pa;

    boot.cmdline = "";
    reserve(0, PAGE_SIZE, "NULL page");
    reserve((uint64_t)(uintptr_t)__image_start, (uint64_t)(uintptr_t)__image_end,
            "image");
    if (!si_pa || si_pa >= IDENT_MAP_LIMIT)
        return "start_info address out of range";
    if (si->magic != XEN_HVM_START_MAGIC_VALUE)
        return "bad start_info magic";
    boot.si_copy = *si;
    boot.si = &boot.si_copy;
    reserve(si_pa, si_pa + sizeof(*si), "start_info");

    if (si->cmdline_paddr && si->cmdline_paddr < IDENT_MAP_LIMIT) {
        const char *c = (const char *)(uintptr_t)si->cmdline_paddr;
        size_t n = strnlen(c, sizeof(cmdline_copy) - 1);

        reserve(si->cmdline_paddr, si->cmdline_paddr + n + 1, "cmdline");
        memcpy(cmdline_copy, c, n);
        cmdline_copy[n] = '\0';
        boot.cmdline = cmdline_copy;
    }
    if (si->nr_modules && si->modlist_paddr &&
        si->modlist_paddr < IDENT_MAP_LIMIT) {
        const struct hvm_modlist_entry *m = (const void *)(uintptr_t)si->modlist_paddr;

        reserve(si->modlist_paddr, si->modlist_paddr + si->nr_modules * sizeof(*m),
                "modlist");
        for (unsigned i = 0; i < si->nr_modules; i++)
            reserve(m[i].paddr, m[i].paddr + m[i].size, "module");
    }
    if (si->version >= 1 && si->memmap_entries && si->memmap_paddr &&
        si->memmap_paddr < IDENT_MAP_LIMIT) {
        unsigned n = si->memmap_entries < MAX_MEMMAP ? si->memmap_entries : MAX_MEMMAP;

        memcpy(boot.memmap_copy, (const void *)(uintptr_t)si->memmap_paddr,
               n * sizeof(boot.memmap_copy[0]));
        boot.memmap = boot.memmap_copy;
        boot.memmap_entries = n;
        reserve(si->memmap_paddr,
                si->memmap_paddr + si->memmap_entries * sizeof(*boot.memmap), "memmap");
    }
    return NULL;
}

/* ---- entry from head.S ------------------------------------------------------------- */
void guest_main(uint32_t si_pa);
void guest_main(uint32_t si_pa)
{
    char name[64];

    trap_init();
    const char *err = parse_start_info(si_pa);     /* no hypercall: xen_init reads it */
    xen_init();
    if (!xen.present) {
        /* Bare QEMU: mask the legacy PIC so firmware timers cannot interrupt us. */
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }

    mm_init();      /* start_info may live in page 0 (QEMU): parsed and copied first */

    printf("xkvm-guest: booting, cmdline \"%s\"\n", boot.cmdline);
    if (xen.present && xen.direct)
        printf("xkvm-guest: Xen %u.%u at CPUID %#x, hypercalls by %s directly "
               "(hypercall=vmcall)\n", xen.version >> 16, xen.version & 0xffff, xen.base,
               xen.hcall_insn);
    else if (xen.present)
        printf("xkvm-guest: Xen %u.%u at CPUID %#x, hypercall page %p via MSR %#x (%s)\n",
               xen.version >> 16, xen.version & 0xffff, xen.base, hypercall_page,
               xen.hcall_msr, xen.hcall_insn);
    else
        printf("xkvm-guest: no Xen CPUID leaves; console on port 0xe9\n");
    if (err)
        xtest_crash("%s (EBX=%#x)", err, si_pa);

    if (!cmdline_get("test", name, sizeof(name)) || !name[0])
        memcpy(name, "hello", sizeof("hello"));
    xtest_name = name;

    for (const struct xtest *t = __xtests_start; t < __xtests_end; t++) {
        if (strcmp(t->name, name))
            continue;
        t->fn();
        verdict_given = true;
        printf("xtest: %s: PASS\n", name);
        shutdown(SHUTDOWN_poweroff);
    }
    xtest_fail("unknown test");
}
