/*
 * pb.c — the pieces of common/rpc that both sides share: protobuf-c messages
 * to and from grpc_byte_buffers (guide §4), status names, the deadline clock
 * and struct rpc_status.
 *
 * Encoding packs straight into the memory of one slice, so a message is
 * copied once (protobuf-c cannot write into the transport's buffers
 * directly). Decoding parses a single-slice buffer in place and only
 * flattens multi-slice buffers; protobuf-c copies bytes and strings out while
 * unpacking, so the slice can be released immediately.
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

ProtobufCMessage *rpc_bb_to_pb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc)
{
    static const uint8_t empty[1];
    if (bb == NULL) return protobuf_c_message_unpack(desc, NULL, 0, empty);

    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
    ProtobufCMessage *m;
    grpc_slice *first;
    size_t total = grpc_byte_buffer_length(bb);
    if (grpc_byte_buffer_reader_peek(&r, &first) && GRPC_SLICE_LENGTH(*first) == total) {
        m = protobuf_c_message_unpack(desc, NULL, total, GRPC_SLICE_START_PTR(*first));
    } else {
        /* peek advanced the reader; start over and flatten once */
        grpc_byte_buffer_reader_destroy(&r);
        if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
        grpc_slice all = grpc_byte_buffer_reader_readall(&r);
        m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all),
                                      GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
    }
    grpc_byte_buffer_reader_destroy(&r);
    return m;
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
