/* altp2m views in a domain context image: src/migrate/pv_altp2m.c. */
#ifndef XKVM_MIGRATE_PV_ALTP2M_H
#define XKVM_MIGRATE_PV_ALTP2M_H

#include <stddef.h>

#include "xkvm/ctx.h"

struct domain;

/* ALTP2M and ALTP2M_VIEW records for d (none while altp2m was never used). 0 or -errno. */
int pv_save_altp2m(struct domain *d, struct xkvm_ctx_writer *w, char *err, size_t errlen);
/*
 * Put the image's views on d (its host p2m in place, not yet running): checked whole,
 * realised in KVM, or refused with -EINVAL/-ENOMEM and nothing changed.
 */
int pv_restore_altp2m(struct domain *d, const void *img, size_t len, char *err, size_t errlen);

#endif
