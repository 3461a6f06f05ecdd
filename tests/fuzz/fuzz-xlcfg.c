/* libFuzzer: xl.cfg text through libxlutil and xkvm's key mapping (xlcfg_read_data). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tools/xlcfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libxlutil 4.17 leaks a value when its parser recovers from some syntax errors
 * (xlu__cfg_string_mk): not ours to fix, and harmless in a one-shot CLI. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libxlutil.so\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");    /* so the warning paths run too */
    struct domcfg c;
    char err[512];
    if (xlcfg_read_data((const char *)data, size, "fuzz.cfg", "/fuzz", XLCFG_NO_KERNEL_CHECK,
                        &c, devnull, err, sizeof(err)) == 0) {
        if (domcfg_validate(&c, err, sizeof(err)) != 0)
            __builtin_trap();
    }
    return 0;
}
