/*
 * A domain's memory reservation (docs/hypervisor.md, "Memory reservation"): the RAM
 * frames it holds against its maximum (xl's maxmem, Xen's max_pages), and the changes
 * a balloon driver asks for with XENMEM_decrease_reservation / populate_physmap /
 * increase_reservation, as Xen 4.17 makes them for an HVM/PVH guest. hc_memory.c
 * decodes the hypercalls; this file changes the p2m and machine memory.
 */
#ifndef XKVM_HV_RESERVATION_H
#define XKVM_HV_RESERVATION_H

#include <stdint.h>

struct domain;

/* The largest extent order a domU may ask for (Xen's CONFIG_DOMU_MAX_ORDER). */
#define RESERVATION_MAX_ORDER 9

/* RAM frames the domain holds now (Xen's tot_pages) and may hold (max_pages). */
uint64_t reservation_current(struct domain *d);
uint64_t reservation_maximum(const struct domain *d);

/*
 * One batch of changes: reservation_begin takes the domain's reservation lock and
 * counts its frames once; the calls in between keep the count; reservation_end lets go.
 */
struct reservation {
    struct domain *d;
    uint64_t held;          /* RAM frames the domain holds */
};
void reservation_begin(struct reservation *r, struct domain *d);
void reservation_end(struct reservation *r);

/*
 * Give back the RAM frame at gfn: the gfn becomes a hole and the frame goes back to
 * machine memory (punched), or, while a dom0 service or a grant still maps it, once
 * the last of those lets go. 0, or Xen's error: -EINVAL (a hole, or beyond the
 * domain's memory), -ENXIO (not a RAM page of the domain: shared_info, a grant frame,
 * a toolstack page), -ENOMEM (the p2m's budgets), with nothing changed.
 */
int reservation_remove_page(struct reservation *r, uint64_t gfn);
/*
 * Populate the 2^order gfns from gfn with fresh (zeroed) frames, all or none. A gfn
 * may be a hole or hold one of the domain's RAM pages: as on Xen, that page leaves the
 * p2m and stays the domain's, counted, without a gfn (as increase_reservation's). 0,
 * or -ENOMEM (past the domain's maximum, machine memory or the p2m's budgets short),
 * -EINVAL (a gfn beyond the domain's memory, in the MMIO hole, or holding what is not
 * the domain's RAM: shared_info, a grant frame, a toolstack page, a grant mapping).
 */
int reservation_populate(struct reservation *r, uint64_t gfn, unsigned order);
/*
 * XENMEM_increase_reservation for a translated guest: 2^order frames become the
 * domain's without a gfn (as on Xen, where the guest can then do nothing with them but
 * hold them); they count against its maximum and are freed with the domain.
 * 0 or -ENOMEM.
 */
int reservation_increase(struct reservation *r, unsigned order);

#endif
