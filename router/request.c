/*
 * request.c — what every VecShard call goes through, in one wrapper set at
 * registration (router_register) instead of a copy in each handler:
 *
 *   - the request id (docs/router.md, "Request ids"): the client's
 *     `x-request-id` when it is 1..64 printable ASCII characters without
 *     spaces, else 16 lower-case hex characters from getrandom(2); returned
 *     to the client as trailing metadata `x-request-id`, sent on every call
 *     to a node made for the request (router_node_opts), and made the
 *     thread's log context (log_set_request_id), so every line the router
 *     writes about the call ends with request_id=<id>;
 *   - API keys (auth.h, docs/security.md §3): with --api-keys, the call's
 *     `authorization: Bearer <key>` is checked against the method's role and
 *     the collection it names before the handler runs (UNAUTHENTICATED or
 *     PERMISSION_DENIED; counted in vecshard_router_auth_failures_total);
 *   - timing: a debug line `msg="request"` for every call, and with
 *     --slow-query-ms N a warn line `msg="slow request"` for calls that took
 *     longer than N ms (method, collection, code, duration_ms; for Search
 *     also k, ef, shards, coverage, noted by the handler with
 *     router_request_search).
 *
 * The current request lives in a thread-local pointer: a handler and
 * everything it calls (shard_call's fan-out included) run on the worker
 * thread that took the call, so no signature had to grow a context
 * argument. Outside a handler (the controller thread) there is none: node
 * calls then carry no id and log lines none.
 *
 * The collection a call is about is read generically from its request
 * message: the string field `collection`, or `name` (DropCollection,
 * DescribeCollection), or `config.name` (CreateCollection), found once per
 * method at registration from the protobuf-c descriptors.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/metrics/metrics.h"
#include "common/util/log.h"
#include "router/router.h"

#define SVC "/vecshard.v1.VecShard/"

/* One call in progress on this thread. */
struct router_request {
    char id[LOG_REQUEST_ID_MAX + 1];
    struct rpc_md md; /* {RPC_REQUEST_ID_MD, id}: what node calls carry */
    const struct router_method *method;
    const char *collection; /* "" when the method names none */
    int64_t start_ms;
    bool search; /* router_request_search was called */
    uint32_t k, ef, shards, shards_ok;
};

static _Thread_local struct router_request *current;

struct rpc_opts router_node_opts(int64_t deadline_ms)
{
    struct rpc_opts o = {.deadline_ms = deadline_ms};
    if (current != NULL) {
        o.md = &current->md;
        o.n_md = 1;
    }
    return o;
}

void router_request_search(uint32_t k, uint32_t ef, uint32_t shards, uint32_t shards_ok)
{
    if (current == NULL) return;
    current->search = true;
    current->k = k;
    current->ef = ef;
    current->shards = shards;
    current->shards_ok = shards_ok;
}

/* Fills id with 16 lower-case hex characters. */
static void id_generate(char id[LOG_REQUEST_ID_MAX + 1])
{
    uint64_t x;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        /* No entropy yet (early boot): time and address still tell calls apart. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (uint64_t)(uintptr_t)id;
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
    }
    snprintf(id, LOG_REQUEST_ID_MAX + 1, "%016" PRIx64, x);
}

/* The call's id: the client's when valid (log_request_id_valid), else a new one. */
static void id_take(struct rpc_call *c, char id[LOG_REQUEST_ID_MAX + 1])
{
    char buf[LOG_REQUEST_ID_MAX + 2];
    long n = rpc_call_metadata(c, RPC_REQUEST_ID_MD, buf, sizeof buf);
    if (n > 0 && log_request_id_valid(buf, (size_t)n)) {
        memcpy(id, buf, (size_t)n + 1);
        return;
    }
    id_generate(id);
}

/* The string field `collection` or `name` of messages of d, or NULL. */
static const ProtobufCFieldDescriptor *coll_field(const ProtobufCMessageDescriptor *d)
{
    static const char *const names[] = {"collection", "name"};
    for (size_t i = 0; i < 2; i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(d, names[i]);
        if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED)
            return f;
    }
    return NULL;
}

/* Finds where a request names its collection: a field of its own, or the
 * `name` of its `config` message (CreateCollection). */
static void coll_find(struct router_method *rm, const ProtobufCMessageDescriptor *d)
{
    rm->coll = coll_field(d);
    if (rm->coll != NULL) return;
    const ProtobufCFieldDescriptor *cfg =
        protobuf_c_message_descriptor_get_field_by_name(d, "config");
    if (cfg == NULL || cfg->type != PROTOBUF_C_TYPE_MESSAGE ||
        cfg->label == PROTOBUF_C_LABEL_REPEATED)
        return;
    rm->coll = coll_field(cfg->descriptor);
    if (rm->coll != NULL) rm->parent = cfg;
}

/* The collection m names, or "". */
static const char *coll_of(const struct router_method *rm, const ProtobufCMessage *m)
{
    if (rm->coll == NULL || m == NULL) return "";
    if (rm->parent != NULL) {
        m = *(const ProtobufCMessage *const *)((const char *)m + rm->parent->offset);
        if (m == NULL) return "";
    }
    const char *s = *(char *const *)((const char *)m + rm->coll->offset);
    return s != NULL ? s : "";
}

/* The wrapper every VecShard method is registered with. */
static grpc_status_code request_run(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    const struct router_method *rm = u;
    struct router *r = rm->r;
    struct router_request req = {.method = rm, .collection = "", .start_ms = rpc_now_ms()};
    id_take(c, req.id);
    req.md = (struct rpc_md){RPC_REQUEST_ID_MD, req.id};
    req.collection = coll_of(rm, m);
    rpc_call_add_trailer(c, RPC_REQUEST_ID_MD, req.id);
    current = &req;
    log_set_request_id(req.id);
    char authz[512], why[AUTH_ERR_MAX];
    grpc_status_code code = GRPC_STATUS_OK;
    if (r->auth.path != NULL) { /* no metadata copy per call when authentication is off */
        long alen = rpc_call_metadata(c, "authorization", authz, sizeof authz);
        code = auth_check(&r->auth, alen >= 0 ? authz : NULL, rm->name, req.collection, why,
                          sizeof why);
    }
    if (code != GRPC_STATUS_OK) {
        const char *reason =
            code == GRPC_STATUS_UNAUTHENTICATED ? "unauthenticated" : "permission_denied";
        metrics_add(r->m.auth_failures, (const char *const[]){reason}, 1);
        log_info("request refused", "method=%s collection=%s code=%s reason=%s", rm->name,
                 log_quote(req.collection), rpc_status_name(code), log_quote(why));
        code = rpc_call_error(c, code, "%s", why);
    } else {
        code = rm->fn(c, m, r);
    }
    int64_t ms = rpc_now_ms() - req.start_ms;
    int slow = r->cfg->slow_query_ms;
    bool is_slow = slow > 0 && ms > slow, debug = log_enabled(LOG_DEBUG);
    if (is_slow || debug) { /* the lines' fields are built only when a line is written */
        char search[128] = "";
        if (req.search)
            snprintf(search, sizeof search, " k=%u ef=%u shards=%u coverage=%.3f", req.k, req.ef,
                     req.shards, req.shards > 0 ? (double)req.shards_ok / req.shards : 0.0);
        if (debug)
            log_debug("request", "method=%s collection=%s code=%s duration_ms=%lld%s", rm->name,
                      log_quote(req.collection), rpc_status_name(code), (long long)ms, search);
        if (is_slow) {
            log_warn("slow request", "method=%s collection=%s code=%s duration_ms=%lld%s", rm->name,
                     log_quote(req.collection), rpc_status_name(code), (long long)ms, search);
            metrics_add(r->m.slow_requests, (const char *const[]){rm->name}, 1);
        }
    }
    log_set_request_id(NULL);
    current = NULL;
    return code;
}

int router_register(struct rpc_server *s, struct router *r)
{
    static const struct {
        const char *method;
        const ProtobufCMessageDescriptor *desc;
        rpc_unary_fn fn;
    } methods[ROUTER_METHODS] = {
        {"CreateCollection", &vecshard__v1__create_collection_request__descriptor,
         router_create_collection},
        {"DropCollection", &vecshard__v1__drop_collection_request__descriptor,
         router_drop_collection},
        {"ListCollections", &vecshard__v1__list_collections_request__descriptor,
         router_list_collections},
        {"DescribeCollection", &vecshard__v1__describe_collection_request__descriptor,
         router_describe_collection},
        {"Upsert", &vecshard__v1__upsert_request__descriptor, router_upsert},
        {"Delete", &vecshard__v1__delete_request__descriptor, router_delete},
        {"Get", &vecshard__v1__get_request__descriptor, router_get},
        {"Search", &vecshard__v1__search_request__descriptor, router_search},
        {"Count", &vecshard__v1__count_request__descriptor, router_count},
        {"ClusterStatus", &vecshard__v1__cluster_status_request__descriptor, router_cluster_status},
        {"Rebalance", &vecshard__v1__rebalance_request__descriptor, router_rebalance},
        {"Drain", &vecshard__v1__drain_request__descriptor, router_drain},
    };
    for (size_t i = 0; i < ROUTER_METHODS; i++) {
        struct router_method *rm = &r->methods[i];
        *rm = (struct router_method){.name = methods[i].method, .fn = methods[i].fn, .r = r};
        coll_find(rm, methods[i].desc);
        char path[96];
        snprintf(path, sizeof path, SVC "%s", methods[i].method);
        if (rpc_server_add_unary(s, path, methods[i].desc, request_run, rm, 0) != 0) return -1;
        if (r->local_node != NULL && methods[i].fn == router_search &&
            rpc_server_set_cheap(s, path, router_search_cheap) != 0)
            return -1;
    }
    return 0;
}
