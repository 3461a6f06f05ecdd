/* The hypercall page's stubs: see hypercall_page.h. */
#include "hv/hypercall_page.h"

#include <string.h>

void hypercall_page_write(uint8_t page[4096], enum hypercall_stub kind)
{
    for (uint32_t nr = 0; nr < 4096 / XKVM_HYPERCALL_STUB; nr++) {
        uint8_t *stub = page + nr * XKVM_HYPERCALL_STUB;
        memset(stub, 0xcc, XKVM_HYPERCALL_STUB);
        stub[0] = 0xb8;                         /* mov $nr, %eax */
        memcpy(&stub[1], &nr, 4);
        if (kind == HYPERCALL_STUB_PORT_IO) {
            stub[5] = 0xe7;                     /* out %eax, $port */
            stub[6] = XKVM_HYPERCALL_PORT;
            stub[7] = 0xc3;                     /* ret */
            continue;
        }
        stub[5] = 0x0f;                         /* vmcall / vmmcall */
        stub[6] = 0x01;
        stub[7] = kind == HYPERCALL_STUB_VMMCALL ? 0xd9 : 0xc1;
        stub[8] = 0xc3;                         /* ret */
    }
}

bool hypercall_insn_is_vmcall(const uint8_t insn[3])
{
    return insn[0] == 0x0f && insn[1] == 0x01 && (insn[2] == 0xc1 || insn[2] == 0xd9);
}
