/*
 * The FIFO event channel word operations (src/hv/evtchn_fifo_words.c) against words a
 * hostile guest writes: the input is 16 starting words, then a sequence of steps, each
 * either linking a port on a queue (as xkvmd raises an event) or the guest writing a
 * word, HEAD or READY. Every link must end; a port it reports linked has LINKED set and
 * is the queue's tail; a tail left LINKED by the guest gets the new port as its LINK.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv/evtchn_fifo_words.h"

#define NR_WORDS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t words[NR_WORDS] = { 0 };
    uint32_t head = 0, ready = 0, tails[16] = { 0 };
    size_t n = size < sizeof(words) ? size : sizeof(words);
    memcpy(words, data, n);
    data += n;
    size -= n;
    while (size >= 5) {
        uint8_t op = data[0];
        uint32_t v;
        memcpy(&v, data + 1, 4);
        data += 5;
        size -= 5;
        uint32_t port = 1 + op % (NR_WORDS - 1);   /* port 0 is reserved, never raised */
        unsigned prio = (op >> 4) & 15;
        if (op & 0x80 && op & 0x40) {           /* the guest writes a word */
            words[port] = v;
        } else if (op & 0x80) {                 /* ... or HEAD / READY */
            if (op & 1)
                head = v;
            else
                ready = v;
        } else {                                /* xkvmd links port */
            uint32_t *tail = &tails[prio];
            uint32_t *tw = *tail < NR_WORDS ? &words[*tail] : NULL;
            bool tail_linked = tw && *tail && (*tw & FIFO_W_LINKED) && tw != &words[port];
            bool was_linked = words[port] & FIFO_W_LINKED;
            struct fifo_link r = fifo_queue_link(&words[port], port, prio, tail, tw, &head,
                                                 &ready);
            if (r.linked == was_linked || !(words[port] & FIFO_W_LINKED))
                abort();
            if (r.linked && *tail != port)
                abort();
            if (r.linked && tail_linked && !r.gave_up &&
                (*tw & FIFO_LINK_MASK) != port && head != port)
                abort();
            if (r.linked && !tail_linked && head != port)
                abort();
            if (r.linked && tail_linked && (*tw & FIFO_W_BUSY))
                abort();                        /* a tail we linked on is never left BUSY */
        }
    }
    return 0;
}
