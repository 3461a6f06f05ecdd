/* The READY token and DATA line of extra migration connections (src/util/multiconn_line.c). */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "util/multiconn_line.h"

HARNESS_MAIN_STATE("multiconn-line");

#define TOK "0123456789abcdef0123456789abcdef"

static int parse(const char *s, char *tok, unsigned *idx)
{
    return multiconn_parse_data_line(s, strlen(s), tok, idx);
}

static void good_lines(void)
{
    char tok[MULTICONN_TOKEN_LEN + 1] = "";
    unsigned idx = 0;
    CHECK_EQ(parse("DATA " TOK " 1", tok, &idx), 0);
    CHECK(!strcmp(tok, TOK));
    CHECK_EQ(idx, 1u);
    CHECK_EQ(parse("DATA " TOK " 15", tok, &idx), 0);
    CHECK_EQ(idx, 15u);
}

static void bad_lines(void)
{
    static const char *const bad[] = {
        "", "DATA", "DATA ", "DATA " TOK, "DATA " TOK " ", "DATA " TOK " 0",
        "DATA " TOK " 16", "DATA " TOK " 01", "DATA " TOK " 1 ", "DATA " TOK "  1",
        "DATA " TOK " 1x", "DATA " TOK " -1", "DATA " TOK " 100",
        "DATA 0123456789ABCDEF0123456789abcdef 1",     /* upper case */
        "DATA 0123456789abcdef0123456789abcde 1",      /* 31 digits */
        "DATA 0123456789abcdef0123456789abcdef0 1",    /* 33 digits */
        "data " TOK " 1", "DATA\t" TOK " 1", "READY " TOK,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char tok[MULTICONN_TOKEN_LEN + 1] = "unset";
        unsigned idx = 99;
        CHECK_EQ(parse(bad[i], tok, &idx), -1);
        CHECK(!strcmp(tok, "unset") && idx == 99);   /* nothing set */
    }
    /* A NUL inside the length given is not a line. */
    char tok[MULTICONN_TOKEN_LEN + 1];
    unsigned idx;
    CHECK_EQ(multiconn_parse_data_line("DATA " TOK " 1\0", sizeof("DATA " TOK " 1"), tok, &idx), -1);
}

static void ready_and_format(void)
{
    uint8_t b[MULTICONN_TOKEN_BYTES];
    for (unsigned i = 0; i < sizeof(b); i++)
        b[i] = (uint8_t)(i * 17 + 1);
    char t[MULTICONN_TOKEN_LEN + 1], back[MULTICONN_TOKEN_LEN + 1], line[64];
    multiconn_token_format(b, t);
    CHECK_EQ(strlen(t), (size_t)MULTICONN_TOKEN_LEN);
    snprintf(line, sizeof(line), " %s", t);
    CHECK_EQ(multiconn_ready_token(line, back), 0);
    CHECK(!strcmp(back, t));
    CHECK_EQ(multiconn_ready_token("", back), -1);      /* an older destination */
    CHECK_EQ(multiconn_ready_token(" " TOK " lz4", back), 0);  /* then its features */
    CHECK_EQ(multiconn_ready_token(" " TOK "x", back), -1);
    CHECK_EQ(multiconn_ready_token(" lz4", back), -1);
    CHECK_EQ(multiconn_ready_token(TOK, back), -1);
    CHECK(multiconn_ready_offers(" " TOK " lz4", MIGRATE_FEATURE_LZ4));
    CHECK(multiconn_ready_offers(" lz4", MIGRATE_FEATURE_LZ4));
    CHECK(multiconn_ready_offers(" x lz4 y", MIGRATE_FEATURE_LZ4));
    CHECK(!multiconn_ready_offers("", MIGRATE_FEATURE_LZ4));
    CHECK(!multiconn_ready_offers(" lz4x", MIGRATE_FEATURE_LZ4));
    CHECK(!multiconn_ready_offers(" " TOK, MIGRATE_FEATURE_LZ4));
    CHECK(!multiconn_ready_offers("lz4", MIGRATE_FEATURE_LZ4));  /* not after a space */
    char data[80];
    unsigned idx;
    snprintf(data, sizeof(data), "DATA %s 3", t);
    CHECK_EQ(parse(data, back, &idx), 0);
    CHECK(!strcmp(back, t) && idx == 3);
}

int main(void)
{
    RUN_TEST(good_lines);
    RUN_TEST(bad_lines);
    RUN_TEST(ready_and_format);
    HARNESS_EXIT();
}
