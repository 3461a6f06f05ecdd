/*
 * A domain's guest-physical memory as seen by code that reads or writes it on the
 * guest's behalf (the PVH loader, the hypercall argument copiers). xkvmd backs it with
 * the domain's p2m window; unit tests and fuzzers back it with a plain buffer.
 */
#ifndef XKVM_HV_GPHYS_H
#define XKVM_HV_GPHYS_H

#include <stdbool.h>
#include <stdint.h>

struct gphys {
    /*
     * Host pointer to [gpa, gpa + len) if the whole range is populated guest RAM (or
     * a Xen frame mapped into the guest), else NULL. Must not overflow: callers may pass
     * any gpa and len, including hostile ones.
     */
    void *(*ptr)(void *opaque, uint64_t gpa, uint64_t len);
    /* Optional: [gpa, gpa + len) was written through ptr (log-dirty while migrating). */
    void (*written)(void *opaque, uint64_t gpa, uint64_t len);
    /*
     * Optional: hold (true) or let go (false) of the memory map, so that pointers ptr
     * returns stay valid in between: another vCPU may change the map concurrently.
     * Not nested.
     */
    void (*hold)(void *opaque, bool hold);
    void *opaque;
};

static inline void gphys_hold(const struct gphys *g, bool hold)
{
    if (g->hold)
        g->hold(g->opaque, hold);
}

static inline void *gphys_ptr(const struct gphys *g, uint64_t gpa, uint64_t len)
{
    return g->ptr(g->opaque, gpa, len);
}

static inline void gphys_written(const struct gphys *g, uint64_t gpa, uint64_t len)
{
    if (g->written)
        g->written(g->opaque, gpa, len);
}

#endif
