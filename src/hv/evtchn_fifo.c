/*
 * Event channels, FIFO ABI (Xen 4.17's event_channel.h; docs/hypervisor.md, "FIFO
 * event channels"): the per-vCPU control blocks and the event array pages in guest
 * memory, priority queues linked through the event words' LINK fields (the word
 * operations are evtchn_fifo_words.c's), and the switch from 2-level. Written after
 * Xen's semantics (xen/common/event_fifo.c), not its code.
 *
 * The guest is hostile: every event word and control block field may change under
 * us. Words are only ever changed with atomic operations, links with a bounded
 * compare-and-swap loop; xkvmd never walks a queue (the guest does), so LINK fields
 * the guest scribbles into loops only hurt the guest. The frames are held by machine
 * frame with a reference each, as vcpu_info is: the guest may remap the gfns, the
 * frames stay ours to write until the domain resets or dies (docs/security.md).
 *
 * Everything here runs with ev->lock held (one lock per domain), which is what Xen's
 * per-queue locks order.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <json-c/json.h>

#include "hv/domain.h"
#include "hv/event.h"
#include "hv/event_state.h"
#include "hv/evtchn_fifo_words.h"
#include "hv/hv.h"
#include "hv/physmap.h"
#include "hv/vcpu.h"
#include "util/log.h"

#define W_PENDING   (1u << EVTCHN_FIFO_PENDING)
#define W_MASKED    (1u << EVTCHN_FIFO_MASKED)
#define W_LINKED    (1u << EVTCHN_FIFO_LINKED)

_Static_assert(FIFO_W_PENDING == W_PENDING && FIFO_W_MASKED == W_MASKED &&
               FIFO_W_LINKED == W_LINKED && FIFO_W_BUSY == (1u << EVTCHN_FIFO_BUSY) &&
               FIFO_LINK_MASK == EVTCHN_FIFO_LINK_MASK, "evtchn_fifo_words.h's bits");
_Static_assert(EVTCHN_FIFO_MAX_PAGES == 128, "Xen's EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES");

event_word_t *evtchn_fifo_word(struct event_domain *ev, uint32_t port)
{
    uint32_t page = port / EVTCHN_FIFO_WORDS_PER_PAGE;
    /* Acquire: SCHEDOP_poll looks without ev->lock; a page is stored before the count. */
    if (port >= EVTCHN_FIFO_NR_CHANNELS ||
        page >= __atomic_load_n(&ev->fifo_nr_pages, __ATOMIC_ACQUIRE))
        return NULL;
    return &ev->fifo_page[page][port % EVTCHN_FIFO_WORDS_PER_PAGE];
}

static uint32_t word_load(event_word_t *w)
{
    return __atomic_load_n(w, __ATOMIC_ACQUIRE);
}

bool evtchn_fifo_is_pending(struct event_domain *ev, uint32_t port)
{
    event_word_t *w = evtchn_fifo_word(ev, port);
    if (port < EVTCHN_NR_PORTS && ev->ports[port].fifo_held)
        return true;
    return w && (word_load(w) & W_PENDING);
}

void evtchn_fifo_clear_pending(struct event_domain *ev, uint32_t port)
{
    event_word_t *w = evtchn_fifo_word(ev, port);
    ev->ports[port].fifo_held = false;
    /* Only P: the guest sees the event is gone and unlinks it itself, as on Xen. */
    if (w)
        __atomic_fetch_and(w, ~W_PENDING, __ATOMIC_SEQ_CST);
}

/* Link port at the tail of v's queue for its priority; flag the queue READY. */
static void link_port(struct domain *d, struct vcpu *v, uint32_t port, event_word_t *word)
{
    struct event_domain *ev = d->ev;
    struct evtchn *ch = &ev->ports[port];
    struct vcpu_event *e = v->ev;
    uint8_t prio = ch->priority;

    /* If it was the tail of the queue it was last on, that queue is empty now. */
    if (ch->fifo_last_vcpu < d->nr_vcpus && ch->fifo_last_priority < EVTCHN_FIFO_MAX_QUEUES) {
        struct vcpu_event *oe = d->vcpus[ch->fifo_last_vcpu].ev;
        if (oe && oe->fifo_tail[ch->fifo_last_priority] == port)
            oe->fifo_tail[ch->fifo_last_priority] = 0;
    }
    ch->fifo_last_vcpu = (uint16_t)v->id;
    ch->fifo_last_priority = prio;

    uint32_t tail = e->fifo_tail[prio];
    struct fifo_link r = fifo_queue_link(word, port, prio, &e->fifo_tail[prio],
                                         tail ? evtchn_fifo_word(ev, tail) : NULL,
                                         &e->fifo_cb->head[prio], &e->fifo_cb->ready);
    if (r.gave_up)
        log_guest(d, "d%u: FIFO port %u not linked: the guest keeps changing its queue's "
                  "tail (port %u)", d->domid, port, tail);
    if (r.raise)
        upcall_mark_pending(v);
}

/*
 * Raise port: set PENDING in its word; link it unless masked or already linked. A port
 * with no event word yet is held pending here until expand_array brings its page; one
 * whose vCPU has no control block is dropped, as on Xen (the guest cannot have
 * unmasked it).
 */
void evtchn_fifo_set_pending(struct domain *d, uint32_t port)
{
    struct event_domain *ev = d->ev;
    struct evtchn *ch = &ev->ports[port];
    event_word_t *word = evtchn_fifo_word(ev, port);
    if (!word) {
        if (!ch->fifo_held) {
            ch->fifo_held = true;
            ev->nr_events++;
            upcall_wake_pollers(d, port);
        }
        return;
    }
    uint16_t vid = ch->notify_vcpu < d->nr_vcpus ? ch->notify_vcpu : 0;
    struct vcpu *v = &d->vcpus[vid];
    /* PENDING first, as Xen: a guest that finds it set unmasks through the hypercall. */
    bool was_pending = __atomic_fetch_or(word, W_PENDING, __ATOMIC_SEQ_CST) & W_PENDING;
    uint32_t w = word_load(word);
    /* No control block on that vCPU yet: nowhere to link (Xen drops the link too). */
    if (!(w & W_MASKED) && !(w & W_LINKED) && v->ev && v->ev->fifo_cb)
        link_port(d, v, port, word);
    if (!was_pending) {
        ev->nr_events++;
        upcall_wake_pollers(d, port);
    }
}

/* EVTCHNOP_unmask: clear MASKED; a pending event is linked now. */
void evtchn_fifo_unmask(struct domain *d, uint32_t port)
{
    event_word_t *word = evtchn_fifo_word(d->ev, port);
    if (!word)
        return;
    __atomic_fetch_and(word, ~W_MASKED, __ATOMIC_SEQ_CST);
    if (word_load(word) & W_PENDING)
        evtchn_fifo_set_pending(d, port);
}

/* Take a reference on the guest's RAM frame at gfn: its mfn, or INVALID_MFN. */
static uint64_t hold_ram_frame(struct domain *d, uint64_t gfn)
{
    uint64_t mfn = p2m_lookup(&d->p2m, gfn);
    if (mfn == INVALID_MFN || mm_frame_get(host_mm(), mfn, d->domid, 1u << FRAME_RAM))
        return INVALID_MFN;
    return mfn;
}

static int map_control_block(struct vcpu *v, uint64_t gfn, uint32_t offset)
{
    struct vcpu_event *e = v->ev;
    if (e->fifo_cb)
        return -EINVAL;     /* once per vCPU, until a reset */
    uint64_t mfn = hold_ram_frame(v->d, gfn);
    if (mfn == INVALID_MFN)
        return -EINVAL;
    e->fifo_cb_gfn = gfn;
    e->fifo_cb_mfn = mfn;
    e->fifo_cb_offset = offset;
    memset(e->fifo_tail, 0, sizeof(e->fifo_tail));
    e->fifo_cb = (void *)((uint8_t *)mm_frame_ptr(host_mm(), mfn) + offset);
    return 0;
}

/* The first control block: the domain leaves 2-level, its pending ports are held. */
static void switch_to_fifo(struct domain *d)
{
    struct event_domain *ev = d->ev;
    for (uint32_t p = 1; p < ev->valid_ports; p++) {
        struct evtchn *ch = &ev->ports[p];
        ch->priority = EVTCHN_FIFO_PRIORITY_DEFAULT;
        ch->fifo_last_vcpu = ch->notify_vcpu;
        ch->fifo_last_priority = EVTCHN_FIFO_PRIORITY_DEFAULT;
        ch->fifo_held = ch->state != ECS_FREE && bit_test(ev->shared_info->evtchn_pending, p);
    }
    ev->abi = EVTCHN_ABI_FIFO;
    log_guest(d, "d%u: event channels: FIFO ABI", d->domid);
}

static bool cb_offset_ok(uint32_t offset)
{
    return !(offset & 7) &&
           offset <= XKVM_PAGE_SIZE - sizeof(struct evtchn_fifo_control_block);
}

int evtchn_fifo_init_control(struct vcpu *v, uint64_t gfn, uint32_t offset)
{
    struct domain *d = v->d;
    if (!cb_offset_ok(offset))
        return -EINVAL;
    int rc = map_control_block(v, gfn, offset);
    if (rc)
        return rc;
    if (d->ev->abi != EVTCHN_ABI_FIFO)
        switch_to_fifo(d);
    log_guest(d, "d%u v%u: FIFO control block at gfn %#llx + %#x", d->domid, v->id,
              (unsigned long long)gfn, offset);
    return 0;
}

static int add_array_page(struct domain *d, uint64_t gfn)
{
    struct event_domain *ev = d->ev;
    if (ev->fifo_nr_pages >= EVTCHN_FIFO_MAX_PAGES)
        return -ENOSPC;
    uint64_t mfn = hold_ram_frame(d, gfn);
    if (mfn == INVALID_MFN)
        return -EINVAL;
    unsigned n = ev->fifo_nr_pages;
    ev->fifo_page_gfn[n] = gfn;
    ev->fifo_page_mfn[n] = mfn;
    ev->fifo_page[n] = mm_frame_ptr(host_mm(), mfn);
    __atomic_store_n(&ev->fifo_nr_pages, n + 1, __ATOMIC_RELEASE);
    return 0;
}

int evtchn_fifo_expand_array(struct domain *d, uint64_t gfn)
{
    struct event_domain *ev = d->ev;
    if (ev->abi != EVTCHN_ABI_FIFO)
        return -EOPNOTSUPP;
    int rc = add_array_page(d, gfn);
    if (rc)
        return rc;
    /* Ports held pending for want of a word get theirs now. */
    uint32_t first = (ev->fifo_nr_pages - 1) * EVTCHN_FIFO_WORDS_PER_PAGE;
    for (uint32_t p = first ? first : 1;
         p < first + EVTCHN_FIFO_WORDS_PER_PAGE && p < ev->valid_ports; p++)
        if (ev->ports[p].fifo_held) {
            ev->ports[p].fifo_held = false;
            evtchn_fifo_set_pending(d, p);
        }
    return 0;
}

int evtchn_fifo_set_priority(struct domain *d, uint32_t port, uint32_t priority)
{
    struct event_domain *ev = d->ev;
    if (!evtchn_port_valid(ev, port))
        return -EINVAL;
    if (ev->abi != EVTCHN_ABI_FIFO)
        return -ENOSYS;     /* the 2-level ABI has no set_priority */
    if (priority > EVTCHN_FIFO_PRIORITY_MIN)
        return -EINVAL;
    ev->ports[port].priority = (uint8_t)priority;   /* the next link uses it */
    return 0;
}

void evtchn_fifo_destroy(struct domain *d)
{
    struct event_domain *ev = d->ev;
    for (unsigned i = 0; i < d->nr_vcpus; i++) {
        struct vcpu_event *e = d->vcpus[i].ev;
        if (!e || !e->fifo_cb)
            continue;
        mm_frame_put(host_mm(), e->fifo_cb_mfn);
        e->fifo_cb = NULL;
        e->fifo_cb_gfn = INVALID_GFN;
        e->fifo_cb_mfn = INVALID_MFN;
        e->fifo_cb_offset = 0;
        memset(e->fifo_tail, 0, sizeof(e->fifo_tail));
    }
    /* No reader finds a page from here on (poll reads words without ev->lock). */
    unsigned nr = ev->fifo_nr_pages;
    __atomic_store_n(&ev->fifo_nr_pages, 0, __ATOMIC_SEQ_CST);
    for (unsigned n = 0; n < nr; n++)
        mm_frame_put(host_mm(), ev->fifo_page_mfn[n]);
    for (uint32_t p = 0; p < EVTCHN_NR_PORTS; p++) {
        ev->ports[p].fifo_held = false;
        ev->ports[p].priority = EVTCHN_FIFO_PRIORITY_DEFAULT;
    }
    ev->abi = EVTCHN_ABI_2L;
}

int evtchn_fifo_restore_vcpu(struct vcpu *v, uint64_t gfn, uint32_t offset,
                             const uint32_t tail[EVTCHN_FIFO_MAX_QUEUES])
{
    struct domain *d = v->d;
    if (!cb_offset_ok(offset))
        return -EINVAL;
    for (unsigned q = 0; q < EVTCHN_FIFO_MAX_QUEUES; q++)
        if (tail[q] >= EVTCHN_NR_PORTS)
            return -EINVAL;
    int rc = map_control_block(v, gfn, offset);
    if (rc)
        return rc;
    d->ev->abi = EVTCHN_ABI_FIFO;
    memcpy(v->ev->fifo_tail, tail, sizeof(v->ev->fifo_tail));
    /* A tail names the queue its port was last linked on. */
    for (unsigned q = 0; q < EVTCHN_FIFO_MAX_QUEUES; q++)
        if (tail[q]) {
            d->ev->ports[tail[q]].fifo_last_vcpu = (uint16_t)v->id;
            d->ev->ports[tail[q]].fifo_last_priority = (uint8_t)q;
        }
    return 0;
}

int evtchn_fifo_restore_page(struct domain *d, uint64_t gfn)
{
    d->ev->abi = EVTCHN_ABI_FIFO;
    return add_array_page(d, gfn);
}

/* ---- debug-state ---------------------------------------------------------------- */

struct json_object *evtchn_fifo_vcpu_json(struct vcpu *v)
{
    struct vcpu_event *e = v->ev;
    if (!e->fifo_cb)
        return NULL;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "gfn", json_object_new_int64((int64_t)e->fifo_cb_gfn));
    json_object_object_add(o, "offset", json_object_new_int64(e->fifo_cb_offset));
    json_object_object_add(o, "ready",
                           json_object_new_int64(__atomic_load_n(&e->fifo_cb->ready,
                                                                 __ATOMIC_ACQUIRE)));
    struct json_object *tails = json_object_new_array();
    for (unsigned q = 0; q < EVTCHN_FIFO_MAX_QUEUES; q++)
        json_object_array_add(tails, json_object_new_int64(e->fifo_tail[q]));
    json_object_object_add(o, "tails", tails);
    return o;
}

struct json_object *evtchn_fifo_port_json(struct event_domain *ev, uint32_t port)
{
    struct json_object *o = json_object_new_object();
    event_word_t *w = evtchn_fifo_word(ev, port);
    json_object_object_add(o, "priority", json_object_new_int64(ev->ports[port].priority));
    json_object_object_add(o, "held", json_object_new_boolean(ev->ports[port].fifo_held));
    if (w)
        json_object_object_add(o, "word", json_object_new_int64(word_load(w)));
    return o;
}
