/*
 * cluster.h — the etcd documents of docs/design.md §3 in one place: their
 * keys, their structs, one parser and one formatter per document, the metric
 * names, and the compare-and-swap update of a shard entry that every later
 * change of placement goes through (epoch + 1, compared on mod_revision).
 *
 * Every process that reads or writes the cluster map (router, node, tests'
 * C helpers) uses these, so a field is spelled, bounded and defaulted once.
 * The Python test harness writes the same JSON; the formatters keep the
 * field order and spelling the processes have always written, so values are
 * byte-identical to what is in etcd today.
 *
 * Documents (under `<prefix>/`, the --etcd-prefix):
 *   nodes/<node-id>            {"addr","started_at","version","capacity","node_id"}
 *   collections/<name>         {"name","dim","metric","m","ef_construction",
 *                               "ef_search","shards","replication_factor","created_at"}
 *   shards/<name>/<shard>      {"epoch","primary","replicas","in_sync","recovering"}
 *   drain/<node-id>            {"node_id","since"}  (docs/rebalance.md §4)
 *   moves/<id>                 {"id","collection","shard","from","to","kind",
 *                               "primary","state","step","attempts","reason",
 *                               "origin","bytes_total","created_at",
 *                               "started_at","finished_at"}  (docs/rebalance.md §2)
 * Integers may be JSON numbers or decimal strings; absent or null optional
 * fields take their defaults (0 for an optional collection integer also
 * means its default, as in CreateCollection).
 *
 * Errors: parsers return 0, or -1 with err (errlen bytes) naming the field
 * ("shard field \"in_sync\" is not an array of strings"). Memory: the
 * parsed structs that hold strings own them; the matching *_clear frees.
 * Formatters and key builders return malloc'ed strings the caller frees
 * (NULL when out of memory).
 */
#ifndef VS_CLUSTER_H
#define VS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cluster/name.h"
#include "common/etcd/etcd.h"

/* ------------------------------------------------------------ metric */

/* Distance metric, numbered as the proto enum (and enum hnsw_metric). */
enum cluster_metric { CLUSTER_METRIC_L2 = 0, CLUSTER_METRIC_IP = 1, CLUSTER_METRIC_COSINE = 2 };

/* The metric's name in etcd and in messages: "l2", "ip", "cosine". */
const char *cluster_metric_name(enum cluster_metric m);

/* Parses "l2" / "ip" / "cosine", any case, with or without "METRIC_";
 * 0 with *out set, or -1. */
int cluster_metric_parse(const char *s, enum cluster_metric *out);

/* ------------------------------------------------------------ keys */

/* What a key under `<prefix>/` names. */
enum cluster_key_kind {
    CLUSTER_KEY_OTHER = 0, /* not a document of §3 (or malformed) */
    CLUSTER_KEY_NODE,
    CLUSTER_KEY_COLLECTION,
    CLUSTER_KEY_SHARD,
    CLUSTER_KEY_DRAIN, /* drain/<node-id> */
    CLUSTER_KEY_MOVE,  /* moves/<id> */
};

/* A parsed key. */
struct cluster_key {
    enum cluster_key_kind kind;
    char name[CLUSTER_NAME_MAX + 1]; /* collection (COLLECTION, SHARD) */
    const char *node_id;             /* NODE, DRAIN: points into the parsed key */
    const char *move_id;             /* MOVE: points into the parsed key */
    uint32_t shard;                  /* SHARD */
};

/* "<prefix>/nodes/<id>". */
char *cluster_key_node(const char *prefix, const char *node_id);
/* "<prefix>/collections/<name>". */
char *cluster_key_collection(const char *prefix, const char *name);
/* "<prefix>/shards/<name>/<shard>". */
char *cluster_key_shard(const char *prefix, const char *name, uint32_t shard);
/* "<prefix>/shards/<name>/": every shard entry of one collection. */
char *cluster_key_shards_of(const char *prefix, const char *name);
/* "<prefix>/controller": the routers' controller election (docs/replication.md §7). */
char *cluster_key_controller(const char *prefix);
/* "<prefix>/drain/<node-id>": the node is draining (docs/rebalance.md §4). */
char *cluster_key_drain(const char *prefix, const char *node_id);
/* "<prefix>/moves/<id>": one rebalance move (docs/rebalance.md §2). */
char *cluster_key_move(const char *prefix, const char *move_id);
/* "<prefix>/<dir>/" for dir "nodes", "collections", "shards", "drain" or "moves". */
char *cluster_key_dir(const char *prefix, const char *dir);

/*
 * Classifies rel, a key with "<prefix>/" removed: "nodes/<id>" (id non-empty,
 * no '/'), "collections/<name>" and "shards/<name>/<shard>" (valid name,
 * shard a decimal number < 2^32 without sign or spaces), "drain/<node-id>"
 * and "moves/<id>" (id 1..CLUSTER_MOVE_ID_MAX of [0-9A-Za-z_.-]). Anything else is
 * CLUSTER_KEY_OTHER. Returns out->kind.
 */
enum cluster_key_kind cluster_key_parse(const char *rel, struct cluster_key *out);

/* Parses "<name>/<shard>" (the part of a shard key after "shards/"). 0 or -1. */
int cluster_key_parse_shard(const char *rel, char name[CLUSTER_NAME_MAX + 1], uint32_t *shard);

/* ------------------------------------------------------------ documents */

/* A node registration: nodes/<id>. */
struct cluster_node {
    char *addr;    /* required, non-empty */
    char *version; /* "" when absent */
    char *node_id; /* "" when absent (the key names the node) */
    int64_t started_at;
    uint64_t capacity;
};

/* A collection config: collections/<name>. No strings to free. */
struct cluster_collection {
    char name[CLUSTER_NAME_MAX + 1]; /* "" when the document has none */
    uint32_t dim;                    /* 1..65536 */
    enum cluster_metric metric;      /* default l2 */
    uint32_t m;                      /* 2..128, default 16 ("M" also read) */
    uint32_t ef_construction;        /* 1..100000, default 200 */
    uint32_t ef_search;              /* 1..100000, default 64 */
    uint32_t shards;                 /* 1..2^20, default 1 */
    uint32_t replication_factor;     /* 1..1024, default 1 */
    int64_t created_at;              /* Unix ms; 0 = unknown */
    uint32_t quant;                  /* enum hnsw_quant; "quantization": "none" (default) | "sq8" */
};

/* A list of node ids (owned strings). */
struct cluster_ids {
    char **v;
    uint32_t n;
};

/* A shard entry: shards/<name>/<shard>. */
struct cluster_shard {
    bool present; /* false: no entry in etcd (zeroed struct) */
    uint64_t epoch;
    char *primary; /* "" when none */
    struct cluster_ids replicas, in_sync, recovering;
    int64_t mod_revision; /* the key's, not in the JSON; 0 when unknown */
};

/* Parses a node document into *out (caller frees with cluster_node_clear). */
int cluster_node_parse(const char *json, size_t len, struct cluster_node *out, char *err,
                       size_t errlen);
/* Frees what cluster_node_parse allocated and zeroes n. */
void cluster_node_clear(struct cluster_node *n);
/* The node document of n. */
char *cluster_node_format(const struct cluster_node *n);

/* Parses a collection document into *out. */
int cluster_collection_parse(const char *json, size_t len, struct cluster_collection *out,
                             char *err, size_t errlen);
/* The collection document of c (name, then the fields in the table above). */
char *cluster_collection_format(const struct cluster_collection *c);

/* Parses a shard entry into *out, present = true (caller frees with
 * cluster_shard_clear; on failure *out is zeroed). */
int cluster_shard_parse(const char *json, size_t len, struct cluster_shard *out, char *err,
                        size_t errlen);
/* Frees what a shard entry owns and zeroes it. NULL is a no-op. */
void cluster_shard_clear(struct cluster_shard *s);
/* Deep copy of src into *dst (dst is overwritten, not cleared). 0 or -1 (ENOMEM). */
int cluster_shard_copy(struct cluster_shard *dst, const struct cluster_shard *src);
/* The shard entry document of s (mod_revision and present are not in it). */
char *cluster_shard_format(const struct cluster_shard *s);

/* True when ids contains id. */
bool cluster_ids_has(const struct cluster_ids *ids, const char *id);
/* Appends a copy of id unless present. 0 or -1 (ENOMEM). */
int cluster_ids_add(struct cluster_ids *ids, const char *id);
/* Removes id if present; true when it was. */
bool cluster_ids_remove(struct cluster_ids *ids, const char *id);
/* Sets s->recovering to replicas minus in_sync (replica order), as every
 * writer of an entry must. 0 or -1 (ENOMEM). */
int cluster_shard_set_recovering(struct cluster_shard *s);

/* ------------------------------------------------------------ drain and moves */

/* A drain mark: drain/<node-id>. */
struct cluster_drain {
    char *node_id; /* required, non-empty */
    int64_t since; /* Unix ms when it was marked */
};

int cluster_drain_parse(const char *json, size_t len, struct cluster_drain *out, char *err,
                        size_t errlen);
void cluster_drain_clear(struct cluster_drain *d);
char *cluster_drain_format(const struct cluster_drain *d);

#define CLUSTER_MOVE_ID_MAX 40

/* What a move does; numbered as enum rebalance_kind. */
enum cluster_move_kind { CLUSTER_MOVE_REPLICA = 0, CLUSTER_MOVE_LEADER = 1 };

/* A move's lifecycle; numbered as the proto enum MoveState. */
enum cluster_move_state {
    CLUSTER_MOVE_QUEUED = 1,
    CLUSTER_MOVE_RUNNING = 2,
    CLUSTER_MOVE_DONE = 3,
    CLUSTER_MOVE_FAILED = 4,
    CLUSTER_MOVE_CANCELLED = 5,
};

/* One rebalance move: moves/<id> (docs/rebalance.md §2). */
struct cluster_move {
    char id[CLUSTER_MOVE_ID_MAX + 1];
    char name[CLUSTER_NAME_MAX + 1]; /* collection */
    uint32_t shard;
    char *from, *to; /* node ids, required */
    enum cluster_move_kind kind;
    bool primary; /* REPLICA: from was the primary when planned */
    enum cluster_move_state state;
    char *step;   /* RUNNING: "adding", "copying", "catching_up", "switching"; else "" */
    uint32_t attempts;
    char *reason; /* "" when none */
    char *origin; /* "manual", "auto", "drain" */
    uint64_t bytes_total;
    int64_t created_at, started_at, finished_at; /* Unix ms; 0 = not yet */
    int64_t mod_revision; /* the key's, not in the JSON; 0 when unknown */
};

/* Fills id with "<13-digit Unix ms>-<5-digit seq>", sortable by creation. */
void cluster_move_id(char id[CLUSTER_MOVE_ID_MAX + 1], int64_t now_ms, uint32_t seq);
/* "replica" / "leader"; parse returns 0 or -1. */
const char *cluster_move_kind_name(enum cluster_move_kind k);
int cluster_move_kind_parse(const char *s, enum cluster_move_kind *out);
/* "queued", "running", "done", "failed", "cancelled"; parse returns 0 or -1. */
const char *cluster_move_state_name(enum cluster_move_state st);
int cluster_move_state_parse(const char *s, enum cluster_move_state *out);
/* QUEUED or RUNNING. */
bool cluster_move_active(const struct cluster_move *m);

/* Parses a move document (caller frees with cluster_move_clear; on failure
 * *out is zeroed). */
int cluster_move_parse(const char *json, size_t len, struct cluster_move *out, char *err,
                       size_t errlen);
void cluster_move_clear(struct cluster_move *m);
/* Deep copy (dst overwritten, not cleared). 0 or -1 (ENOMEM). */
int cluster_move_copy(struct cluster_move *dst, const struct cluster_move *src);
/* Replaces *field (step, reason, origin, from, to) with a copy of value. 0 or -1. */
int cluster_move_set(char **field, const char *value);
char *cluster_move_format(const struct cluster_move *m);

/* ------------------------------------------------------------ shard-entry CAS */

/* Outcome of cluster_shard_update. */
enum cluster_status {
    CLUSTER_OK = 0,
    CLUSTER_GONE,     /* the shard entry does not exist */
    CLUSTER_REFUSED,  /* the change callback refused (its message in err) */
    CLUSTER_CONFLICT, /* every try lost the race to another writer */
    CLUSTER_BAD,      /* the stored entry cannot be parsed */
    CLUSTER_ETCD,     /* etcd failed or is unreachable */
    CLUSTER_NOMEM,
};

/* Static name of a status ("CLUSTER_OK", "CLUSTER_GONE", ...). */
const char *cluster_status_str(enum cluster_status st);

/*
 * The caller's change to a shard entry: edits *s in place (it holds the
 * current entry, epoch not yet bumped). Returns 0 to write it, or -1 to
 * refuse with a message in err. It may run more than once (once per try),
 * always on a freshly read entry.
 */
typedef int (*cluster_shard_change_fn)(struct cluster_shard *s, void *arg, char *err,
                                       size_t errlen);

/*
 * Read-modify-write of shards/<name>/<shard>: reads the entry, calls change,
 * sets epoch = read epoch + 1 and writes it in an etcd txn that compares
 * the key's mod_revision with the one read. When another writer won, it
 * re-reads and tries again, up to max_tries (<= 0 means 5) tries in all.
 * On CLUSTER_OK, *out (optional; caller clears it) holds the entry as
 * written, with its new mod_revision. Other statuses leave etcd unchanged
 * and say why in err.
 */
enum cluster_status cluster_shard_update(etcd_client *etcd, const char *prefix, const char *name,
                                         uint32_t shard, int max_tries,
                                         cluster_shard_change_fn change, void *arg,
                                         struct cluster_shard *out, char *err, size_t errlen);

#endif
