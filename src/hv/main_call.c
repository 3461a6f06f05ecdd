/*
 * Running a function on the main thread from another thread. Domains are created and
 * destroyed, and dom0 connections handled, on the main thread only; a save, restore
 * or migration runs on a thread of its own and asks the main loop for those steps.
 */
#include <pthread.h>
#include <stdbool.h>

#include "hv/hv.h"

struct main_call {
    void (*fn)(void *);
    void *arg;
    bool done;
    struct main_call *next;
};

static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t calls_done = PTHREAD_COND_INITIALIZER;
static struct main_call *calls_head, **calls_tail = &calls_head;
static pthread_t main_thread;
static bool main_thread_set;

void host_set_main_thread(void)
{
    main_thread = pthread_self();
    main_thread_set = true;
}

void host_call_main(void (*fn)(void *), void *arg)
{
    if (!main_thread_set || pthread_equal(pthread_self(), main_thread)) {
        fn(arg);
        return;
    }
    struct main_call c = { .fn = fn, .arg = arg };
    pthread_mutex_lock(&calls_lock);
    *calls_tail = &c;
    calls_tail = &c.next;
    pthread_mutex_unlock(&calls_lock);
    host_notify();
    pthread_mutex_lock(&calls_lock);
    while (!c.done)
        pthread_cond_wait(&calls_done, &calls_lock);
    pthread_mutex_unlock(&calls_lock);
}

void host_run_main_calls(void)
{
    for (;;) {
        pthread_mutex_lock(&calls_lock);
        struct main_call *c = calls_head;
        if (c) {
            calls_head = c->next;
            if (!calls_head)
                calls_tail = &calls_head;
        }
        pthread_mutex_unlock(&calls_lock);
        if (!c)
            return;
        c->fn(c->arg);
        pthread_mutex_lock(&calls_lock);
        c->done = true;
        pthread_cond_broadcast(&calls_done);
        pthread_mutex_unlock(&calls_lock);
    }
}
