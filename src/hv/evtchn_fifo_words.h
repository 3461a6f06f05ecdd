/*
 * The FIFO event channel ABI's operations on words in guest memory (Xen 4.17's
 * event_channel.h; docs/hypervisor.md, "FIFO event channels"): linking an event on a
 * queue through the tail's LINK field, the control block's HEAD and READY. I/O-free and
 * KVM-free, so it is unit-tested (tests/unit/test-fifo-words.c) and fuzzed
 * (tests/fuzz/fuzz-fifo-words.c): every word it touches is the guest's, which may
 * change it at any moment, so every change is atomic and every loop bounded.
 */
#ifndef XKVM_HV_EVTCHN_FIFO_WORDS_H
#define XKVM_HV_EVTCHN_FIFO_WORDS_H

#include <stdbool.h>
#include <stdint.h>

#define FIFO_W_PENDING   (1u << 31)    /* EVTCHN_FIFO_PENDING */
#define FIFO_W_MASKED    (1u << 30)    /* EVTCHN_FIFO_MASKED */
#define FIFO_W_LINKED    (1u << 29)    /* EVTCHN_FIFO_LINKED */
#define FIFO_W_BUSY      (1u << 28)    /* EVTCHN_FIFO_BUSY */
#define FIFO_LINK_MASK   ((1u << 17) - 1)  /* EVTCHN_FIFO_LINK_MASK */
#define FIFO_LINK_TRIES  4             /* compare-and-swap attempts, before and with BUSY */

/*
 * Point word's LINK at port if the word is still LINKED (its event not yet consumed).
 * True if linked. A guest that keeps changing the word gets it held with BUSY for
 * FIFO_LINK_TRIES more attempts (Linux's own loops wait while BUSY is set); after
 * those, as Xen, true with *gave_up set: the guest lost that event. BUSY is never left
 * set by this function.
 */
bool fifo_set_link(uint32_t *word, uint32_t port, bool *gave_up);

struct fifo_link {
    bool linked;        /* LINKED went 0 -> 1: the port is now the queue's tail */
    bool raise;         /* the priority's READY bit went 0 -> 1: notify the vCPU */
    bool gave_up;       /* fifo_set_link gave up on the tail (see above) */
};

/*
 * Link port, whose word is `word`, on a queue of priority prio (0..15): set LINKED
 * (nothing more if it was set); then the tail's word (tail_word, NULL if there is no
 * tail or it has no word) gets the port as its LINK if it is still LINKED, else the
 * control block's HEAD (*head) does and READY's bit prio is set. *tail becomes port.
 * (A port that is its own queue's tail starts an empty queue: the guest consumed it.)
 */
struct fifo_link fifo_queue_link(uint32_t *word, uint32_t port, unsigned prio,
                                 uint32_t *tail, uint32_t *tail_word, uint32_t *head,
                                 uint32_t *ready);

#endif
