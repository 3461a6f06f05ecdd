/*
 * The FIFO event channel word operations (src/hv/evtchn_fifo_words.c): linking on an
 * empty queue and after a tail, a tail the guest consumed, a word already linked, a
 * tail left BUSY with a scribbled LINK, and a guest thread changing the tail word all
 * the time (the link ends, bounded, and never leaves BUSY set).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "harness.h"
#include "hv/evtchn_fifo_words.h"

HARNESS_MAIN_STATE("fifo-words");

static uint32_t words[16];
static uint32_t head, ready, tail;

static void reset(void)
{
    for (unsigned i = 0; i < 16; i++)
        words[i] = FIFO_W_PENDING;
    head = ready = tail = 0;
}

static struct fifo_link link_port(uint32_t port, unsigned prio)
{
    return fifo_queue_link(&words[port], port, prio, &tail, tail ? &words[tail] : NULL, &head,
                           &ready);
}

static void test_empty_queue(void)
{
    reset();
    struct fifo_link r = link_port(3, 7);
    CHECK(r.linked && r.raise && !r.gave_up);
    CHECK_EQ(head, 3);
    CHECK_EQ(tail, 3);
    CHECK_EQ(ready, 1u << 7);
    CHECK_EQ(words[3], FIFO_W_PENDING | FIFO_W_LINKED);
}

static void test_after_tail(void)
{
    reset();
    link_port(3, 7);
    struct fifo_link r = link_port(5, 7);
    CHECK(r.linked && !r.raise);
    CHECK_EQ(head, 3);                              /* HEAD untouched */
    CHECK_EQ(words[3] & FIFO_LINK_MASK, 5);         /* 3 -> 5 */
    CHECK_EQ(tail, 5);
    r = link_port(9, 7);
    CHECK_EQ(words[5] & FIFO_LINK_MASK, 9);
    CHECK_EQ(words[3] & FIFO_LINK_MASK, 5);
}

static void test_tail_consumed(void)
{
    reset();
    link_port(3, 2);
    words[3] &= ~(FIFO_W_LINKED | FIFO_LINK_MASK);  /* the guest took it off */
    struct fifo_link r = link_port(4, 2);
    CHECK(r.linked && !r.raise);                    /* READY still set: no new upcall */
    CHECK_EQ(head, 4);
    CHECK_EQ(words[3] & FIFO_LINK_MASK, 0);
    words[4] &= ~FIFO_W_LINKED;
    ready = 0;                                      /* the guest emptied the queue */
    r = link_port(6, 2);
    CHECK(r.raise);
    CHECK_EQ(head, 6);
}

static void test_already_linked(void)
{
    reset();
    words[8] |= FIFO_W_LINKED;
    struct fifo_link r = link_port(8, 0);
    CHECK(!r.linked && !r.raise);
    CHECK_EQ(head, 0);
    CHECK_EQ(tail, 0);
    CHECK_EQ(ready, 0);
}

static void test_busy_scribbled_tail(void)
{
    reset();
    link_port(3, 1);
    words[3] = FIFO_W_LINKED | FIFO_W_BUSY | FIFO_LINK_MASK;   /* BUSY left, LINK garbage */
    struct fifo_link r = link_port(7, 1);
    CHECK(r.linked && !r.gave_up);
    CHECK_EQ(words[3], FIFO_W_LINKED | 7);
    /* A port past the LINK field is cut to it, never spills into the flags. */
    bool gave_up;
    CHECK(fifo_set_link(&words[3], 0xfffffffu, &gave_up));
    CHECK_EQ(words[3], FIFO_W_LINKED | FIFO_LINK_MASK);
}

static volatile bool stop;

static void *scribbler(void *arg)
{
    uint32_t *w = arg;
    uint32_t mode = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        __atomic_fetch_xor(w, 1u, __ATOMIC_SEQ_CST);          /* LINK's low bit */
        if (++mode % 64 == 0)
            __atomic_fetch_xor(w, FIFO_W_LINKED, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void test_hostile_thread(void)
{
    reset();
    words[3] = FIFO_W_LINKED;
    pthread_t t;
    stop = false;
    if (pthread_create(&t, NULL, scribbler, &words[3])) {
        CHECK(!"pthread_create");
        return;
    }
    unsigned linked = 0, gave_up_n = 0;
    for (unsigned i = 0; i < 20000; i++) {
        bool gave_up;
        linked += fifo_set_link(&words[3], 5, &gave_up);
        gave_up_n += gave_up;
    }
    __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    CHECK(!(words[3] & FIFO_W_BUSY));       /* never left BUSY */
    printf("# 20000 links against a scribbling thread: %u linked, %u given up\n", linked,
           gave_up_n);
}

int main(void)
{
    RUN_TEST(test_empty_queue);
    RUN_TEST(test_after_tail);
    RUN_TEST(test_tail_consumed);
    RUN_TEST(test_already_linked);
    RUN_TEST(test_busy_scribbled_tail);
    RUN_TEST(test_hostile_thread);
    HARNESS_EXIT();
}
