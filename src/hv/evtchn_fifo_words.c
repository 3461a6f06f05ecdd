/*
 * The FIFO ABI's word operations (evtchn_fifo_words.h; docs/hypervisor.md, "FIFO event
 * channels"), after Xen's semantics (xen/common/event_fifo.c), not its code.
 */
#include "hv/evtchn_fifo_words.h"

static bool try_link(uint32_t *word, uint32_t *w, uint32_t port)
{
    uint32_t nw = (*w & ~(FIFO_W_BUSY | FIFO_LINK_MASK)) | (port & FIFO_LINK_MASK);
    return __atomic_compare_exchange_n(word, w, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

bool fifo_set_link(uint32_t *word, uint32_t port, bool *gave_up)
{
    *gave_up = false;
    uint32_t w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    for (int i = 0; i < FIFO_LINK_TRIES; i++) {
        if (!(w & FIFO_W_LINKED))
            return false;
        if (try_link(word, &w, port))
            return true;
    }
    /* Hold it: the guest's compare-and-swap loops expect BUSY clear. */
    __atomic_fetch_or(word, FIFO_W_BUSY, __ATOMIC_SEQ_CST);
    w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    for (int i = 0; i < FIFO_LINK_TRIES; i++) {
        if (!(w & FIFO_W_LINKED)) {
            __atomic_fetch_and(word, ~FIFO_W_BUSY, __ATOMIC_SEQ_CST);
            return false;
        }
        if (try_link(word, &w, port))   /* clears BUSY with the new LINK */
            return true;
    }
    __atomic_fetch_and(word, ~FIFO_W_BUSY, __ATOMIC_SEQ_CST);
    *gave_up = true;
    return true;
}

struct fifo_link fifo_queue_link(uint32_t *word, uint32_t port, unsigned prio,
                                 uint32_t *tail, uint32_t *tail_word, uint32_t *head,
                                 uint32_t *ready)
{
    struct fifo_link r = { 0 };
    if (__atomic_fetch_or(word, FIFO_W_LINKED, __ATOMIC_SEQ_CST) & FIFO_W_LINKED)
        return r;
    r.linked = true;
    /* A port that is its queue's own tail was consumed: the queue is empty. */
    bool on_tail = tail_word && *tail && *tail != port &&
                   fifo_set_link(tail_word, port, &r.gave_up);
    if (!on_tail)
        __atomic_store_n(head, port, __ATOMIC_SEQ_CST);
    *tail = port;
    uint32_t bit = 1u << (prio & 15);
    if (!on_tail && !(__atomic_fetch_or(ready, bit, __ATOMIC_SEQ_CST) & bit))
        r.raise = true;
    return r;
}
