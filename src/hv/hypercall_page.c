#include "hv/hypercall_page.h"

#include <string.h>

void hypercall_page_write(uint8_t page[4096])
{
    for (uint32_t nr = 0; nr < 4096 / XKVM_HYPERCALL_STUB; nr++) {
        uint8_t *stub = page + nr * XKVM_HYPERCALL_STUB;
        memset(stub, 0xcc, XKVM_HYPERCALL_STUB);
        stub[0] = 0xb8;                         /* mov $nr, %eax */
        memcpy(&stub[1], &nr, 4);
        stub[5] = 0xe7;                         /* out %eax, $port */
        stub[6] = XKVM_HYPERCALL_PORT;
        stub[7] = 0xc3;                         /* ret */
    }
}
