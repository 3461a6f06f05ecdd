/* libFuzzer target: pygrub's simple0 output as xkvmd reads it (util/bootloader.h). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/bootloader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct bootloader_result r;
    char err[256];
    if (bootloader_parse_simple0((const char *)data, size, "/run/xkvm/bootloader/pygrub.x",
                                 &r, err, sizeof(err)) == 0) {
        /* What is accepted names files in the directory, and a bounded command line. */
        if (strncmp(r.kernel, "/run/xkvm/bootloader/pygrub.x/boot_kernel.", 42) ||
            strlen(r.cmdline) >= DOMCFG_CMDLINE_MAX || strstr(r.kernel, ".."))
            __builtin_trap();
    }
    return 0;
}
