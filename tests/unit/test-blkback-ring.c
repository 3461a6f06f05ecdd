/*
 * The block backend's request parser and ring processing (src/dom0/blkback/ring.c)
 * against a fake frontend (ringsim.h), and the image I/O (io.c) on a temporary file.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "harness.h"
#include "dom0/blkback/io.h"
#include "dom0/blkback/ringsim.h"

HARNESS_MAIN_STATE("blkback-ring");

struct fe {                     /* the frontend's view of the ring */
    struct ringsim *s;
    blkif_front_ring_t front;
    blkif_back_ring_t back;
};

static void fe_init(struct fe *f)
{
    f->s = sim_new();
    SHARED_RING_INIT((blkif_sring_t *)f->s->sring);
    FRONT_RING_INIT(&f->front, (blkif_sring_t *)f->s->sring, BLK_PAGE_SIZE);
    BACK_RING_INIT(&f->back, (blkif_sring_t *)f->s->sring, BLK_PAGE_SIZE);
}

static blkif_request_t *fe_next(struct fe *f)
{
    blkif_request_t *r = RING_GET_REQUEST(&f->front, f->front.req_prod_pvt);
    memset(r, 0, sizeof(*r));
    f->front.req_prod_pvt++;
    return r;
}

static enum blk_ring_state be_run(struct fe *f, unsigned budget)
{
    RING_PUSH_REQUESTS(&f->front);
    struct blk_ops ops = sim_ops(f->s);
    bool notify = false;
    return blk_ring_process(&f->back, &f->s->work, &f->s->lim, &ops, budget, &notify);
}

/* The next response: its status; id and op checked. */
static int fe_rsp(struct fe *f, uint64_t id, uint8_t op)
{
    if (f->front.rsp_cons == f->front.sring->rsp_prod)
        return 99;              /* none */
    blkif_response_t *r = RING_GET_RESPONSE(&f->front, f->front.rsp_cons);
    f->front.rsp_cons++;
    if (r->id != id || r->operation != op)
        return 98;
    return r->status;
}

static void rw(blkif_request_t *r, uint8_t op, uint64_t id, uint64_t sector)
{
    r->operation = op;
    r->id = id;
    r->sector_number = sector;
}

static void seg(blkif_request_t *r, grant_ref_t ref, uint8_t first, uint8_t last)
{
    r->seg[r->nr_segments++] = (struct blkif_request_segment){ .gref = ref,
        .first_sect = first, .last_sect = last };
}

static void test_write_read_roundtrip(void)
{
    struct fe f;
    fe_init(&f);
    memset(f.s->page[1], 0xA1, BLK_PAGE_SIZE);
    memset(f.s->page[2], 0xB2, BLK_PAGE_SIZE);
    blkif_request_t *r = fe_next(&f);
    rw(r, BLKIF_OP_WRITE, 7, 8);
    seg(r, 1, 0, 7);
    seg(r, 2, 2, 3);            /* sectors 16, 17 from bytes 1024..2047 of page 2 */
    r = fe_next(&f);
    rw(r, BLKIF_OP_READ, 8, 8);
    seg(r, 3, 0, 7);
    seg(r, 4, 6, 7);
    CHECK_EQ(be_run(&f, 64), BLK_RING_IDLE);
    CHECK_EQ(fe_rsp(&f, 7, BLKIF_OP_WRITE), BLKIF_RSP_OKAY);
    CHECK_EQ(fe_rsp(&f, 8, BLKIF_OP_READ), BLKIF_RSP_OKAY);
    CHECK_EQ(f.s->image[8 * 512], 0xA1);
    CHECK_EQ(f.s->image[16 * 512], 0xB2);
    CHECK_EQ(f.s->image[18 * 512], 0);
    CHECK(memcmp(f.s->page[3], f.s->page[1], BLK_PAGE_SIZE) == 0);
    CHECK_EQ(f.s->page[4][6 * 512], 0xB2);
    CHECK_EQ(f.s->page[4][6 * 512 - 1], 0);
    CHECK(sim_all_unmapped(f.s));
    sim_free(f.s);
}

static void test_bad_requests(void)
{
    struct fe f;
    fe_init(&f);
    blkif_request_t *r;
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 1, 0);                       /* no segment */
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 2, 0);
    for (int i = 0; i < 11; i++) seg(r, 1, 0, 0);
    r->nr_segments = 12;                                               /* too many */
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 3, 0); seg(r, 1, 4, 3);      /* first > last */
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 4, 0); seg(r, 1, 0, 8);      /* last > 7 */
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 5, SIM_IMAGE_SECTORS - 1);
    seg(r, 1, 0, 1);                                                   /* past the end */
    r = fe_next(&f); rw(r, BLKIF_OP_WRITE, 6, UINT64_MAX - 2);
    seg(r, 1, 0, 7);                                                   /* overflow */
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 7, 0); seg(r, 999, 0, 0);    /* no such grant */
    f.s->readonly[5] = true;
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 8, 0); seg(r, 5, 0, 0);      /* read into r/o */
    r = fe_next(&f); rw(r, 77, 9, 0);                                  /* unknown op */
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 10, 0); seg(r, 1, 0, 0);
    seg(r, 1000, 0, 0);                                 /* second seg fails: unmap first */
    r = fe_next(&f); rw(r, BLKIF_OP_READ, 11, SIM_IMAGE_SECTORS - 1);
    seg(r, 1, 7, 7);                                                   /* last sector: ok */
    CHECK_EQ(be_run(&f, 64), BLK_RING_IDLE);
    for (uint64_t id = 1; id <= 8; id++)
        CHECK_EQ(fe_rsp(&f, id, id == 6 ? BLKIF_OP_WRITE : BLKIF_OP_READ), BLKIF_RSP_ERROR);
    CHECK_EQ(fe_rsp(&f, 9, 77), BLKIF_RSP_EOPNOTSUPP);
    CHECK_EQ(fe_rsp(&f, 10, BLKIF_OP_READ), BLKIF_RSP_ERROR);
    CHECK_EQ(fe_rsp(&f, 11, BLKIF_OP_READ), BLKIF_RSP_OKAY);
    CHECK_EQ(f.s->ios, 1);
    CHECK(sim_all_unmapped(f.s));
    sim_free(f.s);
}

static void test_indirect(void)
{
    struct fe f;
    fe_init(&f);
    /* 20 segments: pages 1..4, five times each, one sector per segment. */
    struct blkif_request_segment *d = (void *)f.s->page[9];
    for (int i = 0; i < 20; i++) {
        d[i] = (struct blkif_request_segment){ .gref = (grant_ref_t)(1 + i % 4),
                                               .first_sect = (uint8_t)(i / 4),
                                               .last_sect = (uint8_t)(i / 4) };
        f.s->page[1 + i % 4][(i / 4) * 512] = (uint8_t)(0x40 + i);
    }
    blkif_request_indirect_t *in = (void *)fe_next(&f);
    in->operation = BLKIF_OP_INDIRECT;
    in->indirect_op = BLKIF_OP_WRITE;
    in->nr_segments = 20;
    in->id = 0x1234;
    in->sector_number = 4;
    in->indirect_grefs[0] = 9;
    in = (void *)fe_next(&f);                       /* more than the backend offers */
    in->operation = BLKIF_OP_INDIRECT;
    in->indirect_op = BLKIF_OP_READ;
    in->nr_segments = BLK_MAX_INDIRECT_SEGS + 1;
    in->id = 2;
    in = (void *)fe_next(&f);                       /* only read and write go indirect */
    in->operation = BLKIF_OP_INDIRECT;
    in->indirect_op = BLKIF_OP_FLUSH_DISKCACHE;
    in->nr_segments = 1;
    in->id = 3;
    in = (void *)fe_next(&f);                       /* a bad descriptor inside */
    d[40] = (struct blkif_request_segment){ .gref = 1, .first_sect = 3, .last_sect = 2 };
    memcpy(f.s->page[10], &d[40], sizeof(d[40]));
    in->operation = BLKIF_OP_INDIRECT;
    in->indirect_op = BLKIF_OP_READ;
    in->nr_segments = 1;
    in->id = 4;
    in->indirect_grefs[0] = 10;
    CHECK_EQ(be_run(&f, 64), BLK_RING_IDLE);
    CHECK_EQ(fe_rsp(&f, 0x1234, BLKIF_OP_WRITE), BLKIF_RSP_OKAY);
    CHECK_EQ(fe_rsp(&f, 2, BLKIF_OP_READ), BLKIF_RSP_ERROR);
    CHECK_EQ(fe_rsp(&f, 3, BLKIF_OP_FLUSH_DISKCACHE), BLKIF_RSP_ERROR);
    CHECK_EQ(fe_rsp(&f, 4, BLKIF_OP_READ), BLKIF_RSP_ERROR);
    for (int i = 0; i < 20; i++)
        CHECK_EQ(f.s->image[(4 + i) * 512], 0x40 + i);
    CHECK(sim_all_unmapped(f.s));
    sim_free(f.s);
}

static void test_flush_barrier_discard(void)
{
    struct fe f;
    fe_init(&f);
    memset(f.s->page[1], 0x5A, BLK_PAGE_SIZE);
    blkif_request_t *r = fe_next(&f);
    rw(r, BLKIF_OP_FLUSH_DISKCACHE, 1, 0);
    r->sector_number = UINT64_MAX;  /* Linux's empty flush: the block layer's (sector_t)-1 */
    r = fe_next(&f);
    rw(r, BLKIF_OP_WRITE_BARRIER, 2, 0);
    seg(r, 1, 0, 0);
    blkif_request_discard_t *dr = (void *)fe_next(&f);
    dr->operation = BLKIF_OP_DISCARD;
    dr->id = 3;
    dr->sector_number = 0;
    dr->nr_sectors = 1;
    dr = (void *)fe_next(&f);
    dr->operation = BLKIF_OP_DISCARD;
    dr->id = 4;
    dr->sector_number = 1;
    dr->nr_sectors = UINT64_MAX;
    CHECK_EQ(be_run(&f, 64), BLK_RING_IDLE);
    CHECK_EQ(fe_rsp(&f, 1, BLKIF_OP_FLUSH_DISKCACHE), BLKIF_RSP_OKAY);
    CHECK_EQ(fe_rsp(&f, 2, BLKIF_OP_WRITE_BARRIER), BLKIF_RSP_OKAY);
    CHECK_EQ(fe_rsp(&f, 3, BLKIF_OP_DISCARD), BLKIF_RSP_OKAY);
    CHECK_EQ(fe_rsp(&f, 4, BLKIF_OP_DISCARD), BLKIF_RSP_ERROR);
    CHECK_EQ(f.s->flushes, 3);      /* flush; barrier: before and after */
    CHECK_EQ(f.s->discards, 1);
    CHECK_EQ(f.s->image[0], 0);     /* discarded after the barrier wrote it */
    sim_free(f.s);
}

static void test_readonly_device(void)
{
    struct fe f;
    fe_init(&f);
    f.s->lim.readonly = true;
    blkif_request_t *r = fe_next(&f);
    rw(r, BLKIF_OP_WRITE, 1, 0);
    seg(r, 1, 0, 0);
    r = fe_next(&f);
    rw(r, BLKIF_OP_READ, 2, 0);
    seg(r, 1, 0, 0);
    r = fe_next(&f);
    rw(r, BLKIF_OP_FLUSH_DISKCACHE, 3, 0);
    CHECK_EQ(be_run(&f, 64), BLK_RING_IDLE);
    CHECK_EQ(fe_rsp(&f, 1, BLKIF_OP_WRITE), BLKIF_RSP_ERROR);
    CHECK_EQ(fe_rsp(&f, 2, BLKIF_OP_READ), BLKIF_RSP_OKAY);
    CHECK_EQ(fe_rsp(&f, 3, BLKIF_OP_FLUSH_DISKCACHE), BLKIF_RSP_OKAY);
    sim_free(f.s);
}

static void test_broken_ring(void)
{
    struct fe f;
    fe_init(&f);
    f.front.req_prod_pvt = RING_SIZE(&f.front) + 1;     /* more than can be there */
    CHECK_EQ(be_run(&f, 64), BLK_RING_BROKEN);
    CHECK_EQ(f.front.sring->rsp_prod, 0);
    f.front.req_prod_pvt = 0xFFFFFFF0u;                  /* "behind": as far ahead */
    CHECK_EQ(be_run(&f, 64), BLK_RING_BROKEN);
    CHECK_EQ(f.s->ios, 0);
    sim_free(f.s);
}

/* A new backend attaches at rsp_prod: unanswered requests are served, none twice. */
static void test_reattach(void)
{
    struct fe f;
    fe_init(&f);
    for (uint64_t i = 0; i < 6; i++) {
        blkif_request_t *r = fe_next(&f);
        rw(r, BLKIF_OP_READ, 100 + i, i);
        seg(r, 1, 0, 0);
    }
    CHECK_EQ(be_run(&f, 2), BLK_RING_MORE);
    CHECK_EQ(f.front.sring->rsp_prod, 2);
    /* The old backend dies here; the new one knows only the shared ring. */
    blkif_back_ring_t again;
    BACK_RING_ATTACH(&again, f.front.sring, f.front.sring->rsp_prod, BLK_PAGE_SIZE);
    f.back = again;
    CHECK_EQ(be_run(&f, 64), BLK_RING_IDLE);
    CHECK_EQ(f.front.sring->rsp_prod, 6);
    for (uint64_t i = 0; i < 6; i++)
        CHECK_EQ(fe_rsp(&f, 100 + i, BLKIF_OP_READ), BLKIF_RSP_OKAY);
    CHECK_EQ(fe_rsp(&f, 0, 0), 99);
    CHECK_EQ(f.front.sring->req_event, 7);
    sim_free(f.s);
}

/* Losing xkvmd mid-request leaves the request unanswered, for the next attach. */
static void test_lost_connection(void)
{
    struct fe f;
    fe_init(&f);
    blkif_request_t *r = fe_next(&f);
    rw(r, BLKIF_OP_READ, 1, 0);
    seg(r, 1, 0, 0);
    f.s->lost = true;
    CHECK_EQ(be_run(&f, 64), BLK_RING_LOST);
    CHECK_EQ(f.front.sring->rsp_prod, 0);
    CHECK_EQ(f.back.req_cons, 0);
    f.s->lost = false;
    CHECK_EQ(be_run(&f, 64), BLK_RING_IDLE);
    CHECK_EQ(fe_rsp(&f, 1, BLKIF_OP_READ), BLKIF_RSP_OKAY);
    sim_free(f.s);
}

static void test_image_file(void)
{
    char path[] = "/tmp/test-blkback-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 8 * 512 + 100) == 0);     /* a partial tail sector is unused */
    close(fd);
    CHECK(!strcmp(image_path_of("/a/b"), "/a/b"));
    CHECK(!strcmp(image_path_of("aio:/a/b"), "/a/b"));
    CHECK(!strcmp(image_path_of("x:y"), "x:y"));
    struct blk_image img;
    REQUIRE(image_open(&img, path, false) == 0);
    CHECK_EQ(img.sectors, 8);
    char a[512], b[1536], back[2048];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    struct iovec v[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
    CHECK_EQ(image_io(&img, true, v, 2, 1024), 0);
    CHECK_EQ(image_flush(&img), 0);
    struct iovec r = { back, sizeof(back) };
    CHECK_EQ(image_io(&img, false, &r, 1, 1024), 0);
    CHECK(back[0] == 'a' && back[511] == 'a' && back[512] == 'b' && back[2047] == 'b');
    CHECK_EQ(image_discard(&img, 0, 4096), 0);
    image_close(&img);
    REQUIRE(image_open(&img, path, true) == 0);
    CHECK(image_io(&img, true, v, 1, 0) < 0);
    image_close(&img);
    CHECK(image_open(&img, "/nonexistent/image", false) < 0);
    unlink(path);
}

int main(void)
{
    RUN_TEST(test_write_read_roundtrip);
    RUN_TEST(test_bad_requests);
    RUN_TEST(test_indirect);
    RUN_TEST(test_flush_barrier_discard);
    RUN_TEST(test_readonly_device);
    RUN_TEST(test_broken_ring);
    RUN_TEST(test_reattach);
    RUN_TEST(test_lost_connection);
    RUN_TEST(test_image_file);
    HARNESS_EXIT();
}
