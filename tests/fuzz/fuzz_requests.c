/*
 * fuzz_requests — every request message a vecshard server decodes from the
 * network: the methods of vecshard.v1.VecShard (router, public) and
 * vecshard.v1.ShardNode (node, internal). The first byte picks the method;
 * the rest is the request as it would arrive. Runs what the server runs on
 * it before a handler (common/rpc: rpc_pb_find_nul, then protobuf-c's
 * unpack with the method's input descriptor) and re-packs what decoded.
 * The node's write validation runs on WAL records in fuzz_replica.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/rpc/rpc.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"
#include "proto/vecshard/v1/vecshard.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const ProtobufCServiceDescriptor *svc[2] = {&vecshard__v1__vec_shard__descriptor,
                                                &vecshard__v1__shard_node__descriptor};
    unsigned n = svc[0]->n_methods + svc[1]->n_methods, pick = data[0] % n;
    const ProtobufCServiceDescriptor *s = pick < svc[0]->n_methods ? svc[0] : svc[1];
    if (s == svc[1]) pick -= svc[0]->n_methods;
    const ProtobufCMessageDescriptor *d = s->methods[pick].input;
    data++, size--;

    char path[128];
    size_t at;
    int nul = rpc_pb_find_nul(data, size, d, path, sizeof path, &at);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size, data);
    if (m != NULL) {
        if (nul < 0) abort(); /* find_nul refused bytes protobuf-c accepts */
        size_t len = protobuf_c_message_get_packed_size(m);
        uint8_t *out = malloc(len ? len : 1);
        if (out == NULL || protobuf_c_message_pack(m, out) != len) abort();
        free(out);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return 0;
}
