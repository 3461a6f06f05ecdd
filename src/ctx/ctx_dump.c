/*
 * Human and JSON renderings of records, driven by the type's field table plus
 * its optional dump hook.
 *   text: 0x001030 TSC_INFO    inst=0 len=24 mode=default(0) khz=2000000 ...
 *   json: {"offset":40,"type":3,"name":"TSC_INFO","instance":0,"length":24,
 *          "fields":{"mode":0,"khz":2000000,...}}
 */
#include <inttypes.h>

#include "ctx_internal.h"

/* Text output shows BYTES fields up to this size; larger ones by their size only. */
#define TEXT_BYTES_MAX 32

void xkvm_ctx_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':  fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* Start an item: separator, then the key. */
static void item(struct xkvm_ctx_dumper *d, const char *name)
{
    if (d->format == XKVM_CTX_DUMP_JSON) {
        if (d->nr_items++)
            fputc(',', d->out);
        xkvm_ctx_json_string(d->out, name);
        fputc(':', d->out);
    } else {
        fprintf(d->out, " %s=", name);
    }
}

void xkvm_ctx_dump_uint(struct xkvm_ctx_dumper *d, const char *name, uint64_t value)
{
    item(d, name);
    fprintf(d->out, "%" PRIu64, value);
}

void xkvm_ctx_dump_hex(struct xkvm_ctx_dumper *d, const char *name, uint64_t value)
{
    item(d, name);
    fprintf(d->out, d->format == XKVM_CTX_DUMP_JSON ? "%" PRIu64 : "0x%" PRIx64, value);
}

void xkvm_ctx_dump_str(struct xkvm_ctx_dumper *d, const char *name, const char *value)
{
    item(d, name);
    if (d->format == XKVM_CTX_DUMP_JSON)
        xkvm_ctx_json_string(d->out, value);
    else
        fputs(value, d->out);
}

static void dump_field(struct xkvm_ctx_dumper *d, const struct xkvm_ctx_field *f,
                       const uint8_t *p)
{
    uint64_t v;

    switch (f->kind) {
    case XKVM_CTX_FIELD_RESERVED:
        return;                         /* validated to be zero */
    case XKVM_CTX_FIELD_UINT:
    case XKVM_CTX_FIELD_RANGE:
        xkvm_ctx_dump_uint(d, f->name, ctx_load_uint(p, f->size));
        return;
    case XKVM_CTX_FIELD_GFN:
        v = ctx_load_uint(p, f->size);
        if (v != XKVM_CTX_GFN_NONE) {
            xkvm_ctx_dump_hex(d, f->name, v);
        } else {
            item(d, f->name);
            fputs(d->format == XKVM_CTX_DUMP_JSON ? "null" : "none", d->out);
        }
        return;
    case XKVM_CTX_FIELD_FLAGS:
        v = ctx_load_uint(p, f->size);
        if (d->format == XKVM_CTX_DUMP_TEXT && f->nr_names) {
            /* Text names the bits: flags=0x3(initialised|up) */
            item(d, f->name);
            fprintf(d->out, "0x%" PRIx64 "(", v);
            bool first = true;
            for (uint32_t b = 0; b < f->nr_names && b < 64; b++)
                if ((v >> b) & 1 && f->names[b]) {
                    fprintf(d->out, "%s%s", first ? "" : "|", f->names[b]);
                    first = false;
                }
            fputc(')', d->out);
            return;
        }
        xkvm_ctx_dump_hex(d, f->name, v);
        return;
    case XKVM_CTX_FIELD_HEX:
        xkvm_ctx_dump_hex(d, f->name, ctx_load_uint(p, f->size));
        return;
    case XKVM_CTX_FIELD_ENUM:
        v = ctx_load_uint(p, f->size);
        if (d->format == XKVM_CTX_DUMP_TEXT && v < f->nr_names && f->names[v]) {
            item(d, f->name);
            fprintf(d->out, "%s(%" PRIu64 ")", f->names[v], v);
        } else {
            xkvm_ctx_dump_uint(d, f->name, v);
        }
        return;
    case XKVM_CTX_FIELD_BYTES:
        item(d, f->name);
        if (d->format == XKVM_CTX_DUMP_TEXT && f->size > TEXT_BYTES_MAX) {
            /* A page of hex helps nobody on a text line: the type's hook summarises. */
            fprintf(d->out, "(%" PRIu32 " bytes)", f->size);
            return;
        }
        if (d->format == XKVM_CTX_DUMP_JSON)
            fputc('"', d->out);
        for (uint32_t i = 0; i < f->size; i++)
            fprintf(d->out, "%02x", p[i]);
        if (d->format == XKVM_CTX_DUMP_JSON)
            fputc('"', d->out);
        return;
    }
}

static void dump_elements(struct xkvm_ctx_dumper *d, const struct xkvm_ctx_record *rec)
{
    const struct xkvm_ctx_type_desc *t = rec->desc;
    const uint8_t *elems = (const uint8_t *)rec->body + t->fixed_size;
    uint64_t n = (rec->length - t->fixed_size) / t->elem_size;

    if (d->format == XKVM_CTX_DUMP_JSON)
        fputs(",\"elements\":[", d->out);
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = elems + i * t->elem_size;
        if (d->format == XKVM_CTX_DUMP_JSON) {
            fputs(i ? ",{" : "{", d->out);
            d->nr_items = 0;
        } else {
            fprintf(d->out, "\n    [%" PRIu64 "]", i);
        }
        for (uint32_t j = 0; j < t->nr_elem_fields; j++)
            dump_field(d, &t->elem_fields[j], e + t->elem_fields[j].offset);
        if (d->format == XKVM_CTX_DUMP_JSON)
            fputc('}', d->out);
    }
    if (d->format == XKVM_CTX_DUMP_JSON)
        fputc(']', d->out);
}

void xkvm_ctx_dump_record(FILE *out, enum xkvm_ctx_dump_format format,
                          const struct xkvm_ctx_record *rec)
{
    const struct xkvm_ctx_type_desc *t = rec->desc;
    struct xkvm_ctx_dumper d = { .out = out, .format = format };
    const char *name = t ? t->name : "unknown";

    if (format == XKVM_CTX_DUMP_JSON) {
        fprintf(out, "{\"offset\":%" PRIu64 ",\"type\":%" PRIu32 ",\"name\":",
                rec->offset, rec->type);
        xkvm_ctx_json_string(out, name);
        fprintf(out, ",\"instance\":%" PRIu32 ",\"length\":%" PRIu64 ",\"fields\":{",
                rec->instance, rec->length);
    } else {
        fprintf(out, "0x%06" PRIx64 " %-15s inst=%" PRIu32 " len=%" PRIu64,
                rec->offset, name, rec->instance, rec->length);
    }
    if (t) {
        for (uint32_t i = 0; i < t->nr_fields; i++)
            dump_field(&d, &t->fields[i], (const uint8_t *)rec->body + t->fields[i].offset);
        if (t->elem_size && !t->nr_elem_fields && format == XKVM_CTX_DUMP_TEXT)
            fprintf(out, " (%" PRIu64 " bytes of data)", rec->length - t->fixed_size);
        if (t->dump)
            t->dump(rec, &d);
    }
    if (format == XKVM_CTX_DUMP_JSON)
        fputc('}', out);
    if (t && t->elem_size && t->nr_elem_fields)
        dump_elements(&d, rec);
    fputs(format == XKVM_CTX_DUMP_JSON ? "}\n" : "\n", out);
}
