/* altp2m views: state, access checks and the realising layout (src/hv/altp2m.c). */
#include <errno.h>

#include "harness.h"
#include "hv/altp2m.h"

HARNESS_MAIN_STATE("altp2m");

#define NR 4096

static void access_values(void)
{
    CHECK_EQ(altp2m_access_ok(ALTP2M_ACCESS_N), 0);
    CHECK_EQ(altp2m_access_ok(ALTP2M_ACCESS_RX), 0);
    CHECK_EQ(altp2m_access_ok(ALTP2M_ACCESS_RWX), 0);
    CHECK_EQ(altp2m_access_ok(ALTP2M_ACCESS_DEFAULT), 0);
    /* Execute restrictions and write-only pages: not enforceable with memslots. */
    for (unsigned a = 1; a <= 14; a++)
        if (a != ALTP2M_ACCESS_RX && a != ALTP2M_ACCESS_RWX)
            CHECK_EQ(altp2m_access_ok(a), -EOPNOTSUPP);
    CHECK_EQ(altp2m_access_ok(16), -EINVAL);
    CHECK_EQ(altp2m_access_ok(0xffff), -EINVAL);
}

static void views_limits(void)
{
    struct altp2m a;
    CHECK_EQ(altp2m_init(&a, NR), 0);
    unsigned v, made = 0;
    while (altp2m_create(&a, ALTP2M_ACCESS_RWX, &v) == 0) {
        CHECK_EQ(v, made + 1);
        made++;
    }
    CHECK_EQ(made, ALTP2M_MAX_VIEWS - 1);
    CHECK_EQ(altp2m_create(&a, ALTP2M_ACCESS_RWX, &v), -EINVAL);
    CHECK_EQ(altp2m_destroy(&a, 0), -EINVAL);
    CHECK_EQ(altp2m_destroy(&a, ALTP2M_MAX_VIEWS), -EINVAL);
    CHECK_EQ(altp2m_destroy(&a, 0xffff), -EINVAL);
    a.active = 3;
    CHECK_EQ(altp2m_destroy(&a, 3), -EBUSY);
    CHECK_EQ(altp2m_destroy(&a, 4), 0);
    CHECK_EQ(altp2m_destroy(&a, 4), -EINVAL);
    CHECK_EQ(altp2m_create(&a, ALTP2M_ACCESS_N, &v), 0);
    CHECK_EQ(v, 4u);
    CHECK_EQ(altp2m_create(&a, 3, &v), -EOPNOTSUPP);
    altp2m_fini(&a);
}

static void set_get_access(void)
{
    struct altp2m a;
    altp2m_init(&a, NR);
    unsigned v;
    uint8_t prev;
    CHECK_EQ(altp2m_create(&a, ALTP2M_ACCESS_RWX, &v), 0);
    CHECK_EQ(altp2m_access(&a, v, 10), ALTP2M_ACCESS_RWX);
    CHECK_EQ(altp2m_set_access(&a, v, 10, ALTP2M_ACCESS_RX, &prev), 0);
    CHECK_EQ(prev, 0);
    CHECK_EQ(altp2m_access(&a, v, 10), ALTP2M_ACCESS_RX);
    CHECK_EQ(altp2m_access(&a, 0, 10), ALTP2M_ACCESS_RWX);   /* views are separate */
    CHECK_EQ(altp2m_set_access(&a, v, NR, ALTP2M_ACCESS_RX, &prev), -EINVAL);
    CHECK_EQ(altp2m_set_access(&a, v, 11, ALTP2M_ACCESS_RX + 1, &prev), -EOPNOTSUPP);
    CHECK_EQ(altp2m_set_access(&a, 7, 11, ALTP2M_ACCESS_RX, &prev), -EINVAL);
    CHECK(!altp2m_view_is_identity(&a, v));
    /* Undo puts back exactly what was there. */
    altp2m_put_raw(&a, v, 10, prev);
    CHECK_EQ(altp2m_access(&a, v, 10), ALTP2M_ACCESS_RWX);
    CHECK(altp2m_view_is_identity(&a, v));
    /* The active view decides what the guest may do. */
    altp2m_set_access(&a, v, 20, ALTP2M_ACCESS_N, &prev);
    altp2m_set_access(&a, v, 21, ALTP2M_ACCESS_RX, &prev);
    CHECK(altp2m_allows(&a, 20, true));
    a.active = v;
    CHECK(!altp2m_allows(&a, 20, false));
    CHECK(!altp2m_allows(&a, 20, true));
    CHECK(altp2m_allows(&a, 21, false));
    CHECK(!altp2m_allows(&a, 21, true));
    CHECK(altp2m_allows(&a, 22, true));
    altp2m_fini(&a);
}

static void remaps(void)
{
    struct altp2m a;
    altp2m_init(&a, NR);
    unsigned v;
    uint64_t prev;
    altp2m_create(&a, ALTP2M_ACCESS_RWX, &v);
    CHECK_EQ(altp2m_change_gfn(&a, v, 5, 9, &prev), 0);
    CHECK_EQ(prev, ALTP2M_NO_GFN);
    CHECK_EQ(altp2m_target(&a, v, 5), 9u);
    CHECK_EQ(altp2m_target(&a, 0, 5), 5u);
    CHECK_EQ(altp2m_change_gfn(&a, v, 5, NR, &prev), -EINVAL);
    CHECK_EQ(altp2m_change_gfn(&a, v, NR, 1, &prev), -EINVAL);
    CHECK_EQ(altp2m_change_gfn(&a, v, 5, ALTP2M_NO_GFN, &prev), 0);
    CHECK_EQ(prev, 9u);
    CHECK_EQ(altp2m_target(&a, v, 5), 5u);
    /* Thousands: the budget holds, and the ones kept stay sorted and found. */
    int rc = 0;
    unsigned n = 0;
    for (uint64_t g = NR - 1; g > 0 && !rc; g--, n++)
        rc = altp2m_change_gfn(&a, v, g, 0, &prev);
    CHECK_EQ(rc, -ENOMEM);
    CHECK_EQ(n, ALTP2M_MAX_REMAPS + 1);
    CHECK_EQ(altp2m_target(&a, v, NR - 1), 0u);
    CHECK_EQ(altp2m_target(&a, v, NR - ALTP2M_MAX_REMAPS), 0u);
    CHECK_EQ(altp2m_target(&a, v, NR - ALTP2M_MAX_REMAPS - 1), NR - ALTP2M_MAX_REMAPS - 1);
    altp2m_fini(&a);
}

static void layout(void)
{
    struct altp2m a;
    altp2m_init(&a, NR);
    unsigned v;
    uint8_t p8;
    uint64_t p64;
    altp2m_create(&a, ALTP2M_ACCESS_RWX, &v);
    struct altp2m_hslot hs[2] = { { .gfn = 0, .nr = 100 }, { .gfn = 200, .nr = 1, .readonly = true } };
    struct altp2m_kslot ks[16];
    /* Identity: the host's slots. */
    CHECK_EQ(altp2m_layout(&a, v, hs, 2, ks, 16), 2);
    CHECK(ks[1].readonly && ks[1].gfn == 200 && ks[1].hva_gfn == 200);
    altp2m_set_access(&a, v, 10, ALTP2M_ACCESS_RX, &p8);
    altp2m_set_access(&a, v, 11, ALTP2M_ACCESS_RX, &p8);
    altp2m_set_access(&a, v, 20, ALTP2M_ACCESS_N, &p8);
    altp2m_change_gfn(&a, v, 30, 40, &p64);
    int n = altp2m_layout(&a, v, hs, 2, ks, 16);
    /* [0,10) rw, [10,12) ro, [12,20) rw, hole at 20, [21,30) rw, 30->40, [31,100), 200 ro */
    CHECK_EQ(n, 7);
    CHECK(ks[0].gfn == 0 && ks[0].nr == 10 && !ks[0].readonly);
    CHECK(ks[1].gfn == 10 && ks[1].nr == 2 && ks[1].readonly);
    CHECK(ks[2].gfn == 12 && ks[2].nr == 8);
    CHECK(ks[3].gfn == 21 && ks[3].nr == 9 && ks[3].hva_gfn == 21);
    CHECK(ks[4].gfn == 30 && ks[4].nr == 1 && ks[4].hva_gfn == 40 && !ks[4].readonly);
    CHECK(ks[5].gfn == 31 && ks[5].nr == 69);
    CHECK(ks[6].gfn == 200 && ks[6].readonly);
    /* Too many pieces: refused, not truncated. */
    CHECK_EQ(altp2m_layout(&a, v, hs, 2, ks, 6), -ENOMEM);
    /* A view whose default is n: only its rwx/rx gfns are slots. */
    unsigned w;
    altp2m_create(&a, ALTP2M_ACCESS_N, &w);
    CHECK_EQ(altp2m_layout(&a, w, hs, 2, ks, 16), 0);
    altp2m_set_access(&a, w, 50, ALTP2M_ACCESS_RWX, &p8);
    CHECK_EQ(altp2m_layout(&a, w, hs, 2, ks, 16), 1);
    CHECK(ks[0].gfn == 50 && ks[0].nr == 1);
    CHECK(!altp2m_view_is_identity(&a, w));
    altp2m_fini(&a);
}

int main(void)
{
    RUN_TEST(access_values);
    RUN_TEST(views_limits);
    RUN_TEST(set_get_access);
    RUN_TEST(remaps);
    RUN_TEST(layout);
    HARNESS_EXIT();
}
