/*
 * pb.c — the pieces of common/rpc that both sides share: protobuf-c messages
 * to and from grpc_byte_buffers (grpc-core-notes §4), status names, the deadline clock
 * and struct rpc_status.
 *
 * Encoding packs straight into the memory of one slice, so a message is
 * copied once (protobuf-c cannot write into the transport's buffers
 * directly). Decoding parses a single-slice buffer in place and only
 * flattens multi-slice buffers; protobuf-c copies bytes and strings out while
 * unpacking, so the slice can be released immediately.
 *
 * protobuf-c hands `string` fields to C as NUL-terminated char *, so a NUL
 * inside a string would silently cut it short ("nul\0../x" reads as "nul")
 * and every later check would see a different value than the client sent.
 * rpc_pb_find_nul walks the wire bytes with the descriptor and finds such a
 * string; the server refuses those requests before any handler runs, so for
 * every decoded request strlen() of a string is its full wire length.
 */
#include "common/rpc/rpc_internal.h"

#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

int64_t rpc_now_ms(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

gpr_timespec rpc_deadline_ts(int64_t deadline_ms)
{
    if (deadline_ms <= 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_from_millis(deadline_ms, GPR_CLOCK_MONOTONIC);
}

int64_t rpc_deadline_from_ts(gpr_timespec ts)
{
    if (gpr_time_cmp(ts, gpr_inf_future(ts.clock_type)) == 0) return 0;
    gpr_timespec m = gpr_convert_clock_type(ts, GPR_CLOCK_MONOTONIC);
    if (m.tv_sec > INT64_MAX / 1000 - 1) return 0;
    int64_t ms = m.tv_sec * 1000 + m.tv_nsec / 1000000;
    return ms > 0 ? ms : 1; /* a deadline in the past stays a deadline */
}

const char *rpc_status_name(grpc_status_code code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((int)code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0])) return "UNKNOWN_CODE";
    return names[code];
}

grpc_byte_buffer *rpc_pb_to_bb(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Unpacks bytes as desc; with `nul` set, first looks for a NUL in a string
 * (rpc_pb_find_nul) and on one returns NULL with *nul = true. */
static ProtobufCMessage *unpack(const uint8_t *p, size_t len,
                                const ProtobufCMessageDescriptor *desc, struct rpc_nul *nul)
{
    if (nul != NULL) {
        nul->found = rpc_pb_find_nul(p, len, desc, nul->path, sizeof nul->path, &nul->at) == 1;
        if (nul->found) return NULL;
    }
    return protobuf_c_message_unpack(desc, NULL, len, p);
}

ProtobufCMessage *rpc_bb_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                                struct rpc_nul *nul)
{
    static const uint8_t empty[1];
    if (nul != NULL) nul->found = false;
    if (bb == NULL) return protobuf_c_message_unpack(desc, NULL, 0, empty);

    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
    ProtobufCMessage *m;
    grpc_slice *first;
    size_t total = grpc_byte_buffer_length(bb);
    if (grpc_byte_buffer_reader_peek(&r, &first) && GRPC_SLICE_LENGTH(*first) == total) {
        m = unpack(GRPC_SLICE_START_PTR(*first), total, desc, nul);
    } else {
        /* peek advanced the reader; start over and flatten once */
        grpc_byte_buffer_reader_destroy(&r);
        if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
        grpc_slice all = grpc_byte_buffer_reader_readall(&r);
        m = unpack(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), desc, nul);
        grpc_slice_unref(all);
    }
    grpc_byte_buffer_reader_destroy(&r);
    return m;
}

ProtobufCMessage *rpc_bb_to_pb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc)
{
    return rpc_bb_decode(bb, desc, NULL);
}

/* Reads a varint at *p (< end) into *v and advances *p; false if truncated. */
static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* True when messages of d can hold a string field, directly or nested
 * (depth bounds recursive types). */
static bool desc_has_string(const ProtobufCMessageDescriptor *d, int depth)
{
    if (depth > 16) return false;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type == PROTOBUF_C_TYPE_STRING) return true;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && desc_has_string(f->descriptor, depth + 1))
            return true;
    }
    return false;
}

/* desc_has_string of message field f (index fi), remembered in memo[fi]
 * (0 = not known yet, 1 = yes, 2 = no) so a repeated field asks once. */
static bool sub_has_string(const ProtobufCFieldDescriptor *f, size_t fi, unsigned char *memo,
                           int depth)
{
    if (fi < 64 && memo[fi] != 0) return memo[fi] == 1;
    bool has = desc_has_string(f->descriptor, depth + 1);
    if (fi < 64) memo[fi] = has ? 1 : 2;
    return has;
}

/* Appends "name" or "name[i]" (repeated fields) to path at *off. */
static void path_add(char *path, size_t pathlen, size_t *off, const ProtobufCFieldDescriptor *f,
                     unsigned index)
{
    if (*off >= pathlen) return;
    int n = f->label == PROTOBUF_C_LABEL_REPEATED
                ? snprintf(path + *off, pathlen - *off, "%s%s[%u]", *off ? "." : "", f->name, index)
                : snprintf(path + *off, pathlen - *off, "%s%s", *off ? "." : "", f->name);
    if (n > 0) *off += (size_t)n;
}

/* rpc_pb_find_nul below one message level; `off` is the length of the path so far. */
static int find_nul(const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *d,
                    char *path, size_t pathlen, size_t off, size_t *at, int depth)
{
    unsigned seen[64] = {0};      /* occurrences per field index, for "points[3]" */
    unsigned char walk[64] = {0}; /* sub_has_string per field index */
    while (p < end) {
        uint64_t tag, len;
        if (!wire_varint(&p, end, &tag)) return -1;
        switch (tag & 7) {
        case 0:
            if (!wire_varint(&p, end, &len)) return -1;
            continue;
        case 1:
            if (end - p < 8) return -1;
            p += 8;
            continue;
        case 5:
            if (end - p < 4) return -1;
            p += 4;
            continue;
        case 2:
            break;
        default: /* groups: not in proto3, protobuf-c refuses them */
            return -1;
        }
        if (!wire_varint(&p, end, &len) || len > (uint64_t)(end - p)) return -1;
        const uint8_t *body = p;
        p += len;
        const ProtobufCFieldDescriptor *f =
            tag >> 3 <= UINT32_MAX
                ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
                : NULL;
        if (f == NULL) continue; /* unknown field: not seen by C code */
        size_t fi = (size_t)(f - d->fields);
        unsigned index = fi < 64 ? seen[fi]++ : 0;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const uint8_t *nul = memchr(body, 0, len);
            if (nul == NULL) continue;
            if (pathlen > 0) path[off < pathlen ? off : pathlen - 1] = '\0';
            path_add(path, pathlen, &off, f, index);
            *at = (size_t)(nul - body);
            return 1;
        }
        if (f->type != PROTOBUF_C_TYPE_MESSAGE || depth >= 16 ||
            !sub_has_string(f, fi, walk, depth))
            continue;
        size_t sub = off;
        path_add(path, pathlen, &sub, f, index);
        int rc = find_nul(body, body + len, f->descriptor, path, pathlen, sub, at, depth + 1);
        if (rc != 0) return rc;
    }
    return 0;
}

int rpc_pb_find_nul(const uint8_t *buf, size_t len, const ProtobufCMessageDescriptor *desc,
                    char *path, size_t pathlen, size_t *at)
{
    if (pathlen > 0) path[0] = '\0';
    *at = 0;
    if (!desc_has_string(desc, 0)) return 0;
    return find_nul(buf, buf + len, desc, path, pathlen, 0, at, 0);
}

/* Copies a slice into a NUL-terminated buffer, truncating. */
static void slice_to_buf(grpc_slice s, char *buf, size_t n)
{
    size_t len = GRPC_SLICE_LENGTH(s);
    if (len >= n) len = n - 1;
    memcpy(buf, GRPC_SLICE_START_PTR(s), len);
    buf[len] = '\0';
}

void rpc_status_set(struct rpc_status *st, grpc_status_code code, const char *details)
{
    if (st == NULL) return;
    st->code = code;
    snprintf(st->details, sizeof st->details, "%s", details ? details : "");
    memset(st->trailers, 0, 2);
}

void rpc_status_fill(struct rpc_status *st, grpc_status_code code, const grpc_slice *details,
                     const grpc_metadata_array *trailers)
{
    if (st == NULL) return;
    st->code = code;
    st->details[0] = '\0';
    if (details != NULL) slice_to_buf(*details, st->details, sizeof st->details);
    /* pack "key\0value\0" pairs while they fit, then the closing "\0" */
    size_t used = 0, cap = sizeof st->trailers - 1;
    for (size_t i = 0; trailers != NULL && i < trailers->count; i++) {
        grpc_slice k = trailers->metadata[i].key, v = trailers->metadata[i].value;
        size_t kl = GRPC_SLICE_LENGTH(k), vl = GRPC_SLICE_LENGTH(v);
        if (used + kl + vl + 2 > cap) break;
        memcpy(st->trailers + used, GRPC_SLICE_START_PTR(k), kl);
        used += kl;
        st->trailers[used++] = '\0';
        memcpy(st->trailers + used, GRPC_SLICE_START_PTR(v), vl);
        used += vl;
        st->trailers[used++] = '\0';
    }
    st->trailers[used] = '\0';
}

const char *rpc_status_trailer(const struct rpc_status *st, const char *key)
{
    const char *p = st->trailers, *end = st->trailers + sizeof st->trailers;
    while (p < end && *p != '\0') {
        const char *v = p + strlen(p) + 1;
        if (strcmp(p, key) == 0) return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}
