/* The hypercall page's stubs on each transport (src/hv/hypercall_page.c). */
#include <string.h>

#include "harness.h"
#include "hv/hypercall.h"
#include "hv/hypercall_page.h"

HARNESS_MAIN_STATE("hypercall-page");

static uint8_t page[4096];

/* Every stub: mov $nr, %eax; the instruction; ret; int3 to the end. */
static void check_stubs(enum hypercall_stub kind, const uint8_t *insn, unsigned insn_len)
{
    memset(page, 0, sizeof(page));
    hypercall_page_write(page, kind);
    for (uint32_t nr = 0; nr < 4096 / XKVM_HYPERCALL_STUB; nr++) {
        const uint8_t *s = page + nr * XKVM_HYPERCALL_STUB;
        uint32_t imm;
        memcpy(&imm, s + 1, 4);
        CHECK_EQ(s[0], 0xb8);
        CHECK_EQ(imm, nr);
        CHECK(!memcmp(s + 5, insn, insn_len));
        CHECK_EQ(s[5 + insn_len], 0xc3);
        for (unsigned i = 6 + insn_len; i < XKVM_HYPERCALL_STUB; i++)
            CHECK_EQ(s[i], 0xcc);
    }
}

static void port_io_stubs(void)
{
    const uint8_t out[] = { 0xe7, XKVM_HYPERCALL_PORT };
    CHECK_EQ(sizeof(out), XKVM_HYPERCALL_OUT_LEN);
    check_stubs(HYPERCALL_STUB_PORT_IO, out, sizeof(out));
    CHECK(!hypercall_insn_is_vmcall(page + 5));
}

static void vmcall_stubs(void)
{
    const uint8_t vmcall[] = { 0x0f, 0x01, 0xc1 };
    CHECK_EQ(sizeof(vmcall), XKVM_HYPERCALL_VMCALL_LEN);
    check_stubs(HYPERCALL_STUB_VMCALL, vmcall, sizeof(vmcall));
    CHECK(hypercall_insn_is_vmcall(page + 5));
}

static void vmmcall_stubs(void)
{
    const uint8_t vmmcall[] = { 0x0f, 0x01, 0xd9 };
    check_stubs(HYPERCALL_STUB_VMMCALL, vmmcall, sizeof(vmmcall));
    CHECK(hypercall_insn_is_vmcall(page + 5));
}

/* What the VMCALL verdict looks for, and nothing near it. */
static void insn_recognised(void)
{
    const uint8_t yes[][3] = { { 0x0f, 0x01, 0xc1 }, { 0x0f, 0x01, 0xd9 } };
    const uint8_t no[][3] = {
        { 0x0f, 0x01, 0xd8 },   /* vmrun */
        { 0x0f, 0x01, 0xc2 },   /* vmlaunch */
        { 0x0f, 0x05, 0x00 },   /* syscall */
        { 0x0f, 0x00, 0xc1 },
        { 0x90, 0x01, 0xc1 },
        { 0xe7, 0xea, 0xc3 },   /* the port-I/O stub */
    };
    for (unsigned i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        CHECK(hypercall_insn_is_vmcall(yes[i]));
    for (unsigned i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        CHECK(!hypercall_insn_is_vmcall(no[i]));
}

/* The number in RAX: all 64 bits in long mode (as Xen), EAX in 32-bit mode. Found by
 * the hypercall fuzzer: 0x10000001d ran sched_op. */
static void number_from_rax(void)
{
    CHECK_EQ(hypercall_nr(29, true), 29u);
    CHECK_EQ(hypercall_nr(0x10000001dull, true), HYPERCALL_NR_INVALID);
    CHECK_EQ(hypercall_nr(0xffffffff0000000cull, true), HYPERCALL_NR_INVALID);
    CHECK_EQ(hypercall_nr(0xffffffffull, true), HYPERCALL_NR_INVALID);
    CHECK_EQ(hypercall_nr(0x80000000ull, true), 0x80000000u);
    CHECK_EQ(hypercall_nr(0x10000001dull, false), 29u);    /* EAX */
    CHECK_EQ(hypercall_nr(0xdeadbeef00000011ull, false), 17u);
}

int main(void)
{
    RUN_TEST(number_from_rax);
    RUN_TEST(port_io_stubs);
    RUN_TEST(vmcall_stubs);
    RUN_TEST(vmmcall_stubs);
    RUN_TEST(insn_recognised);
    HARNESS_EXIT();
}
