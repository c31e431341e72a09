/*
 * replica.h — one shard replica of vecshard-node: the HNSW index, the
 * payload store, the write-ahead log and the snapshots of one
 * (collection, shard) in its folder `<data-dir>/<collection>/<shard>/`.
 * Public API, threading and ownership; the on-disk formats and recovery
 * rules are in docs/storage.md.
 *
 * Threading:
 *   - replica_write and replica_apply may be called from any number of
 *     threads; a write lock inside the replica serialises them, so the LSN
 *     order is the WAL order is the apply order. Under fsync `batch` the
 *     wait for the group fsync happens after that lock is released, so
 *     concurrent writers share fsyncs.
 *   - replica_search, replica_get and replica_status run concurrently with
 *     each other, with writes and with snapshots; they never wait for the
 *     write lock.
 *   - Snapshots: replica_snapshot (or the background thread started when
 *     any of snapshot_wal_bytes, snapshot_wal_records, snapshot_age_ms
 *     is > 0). Writes pause while the index and payloads are copied into
 *     the page cache (see replica.c for how long); searches do not pause.
 *   - replica_open / replica_close / replica_remove_files need no other call
 *     on the same replica running.
 *
 * Errors: every call that can fail returns an enum replica_code
 * (REPLICA_OK = 0) and, when err is not NULL, writes a one-line message
 * naming the bad field into err (at least REPLICA_ERR_MAX bytes), e.g.
 * "batch.upserts[3].vector has 127 floats, collection dim is 128".
 * replica_code_grpc maps a code to the gRPC status the node should answer.
 */
#ifndef VS_NODE_REPLICA_H
#define VS_NODE_REPLICA_H

#include "common/hnsw/hnsw.h"
#include "node/storage/snapshot.h"
#include "node/storage/wal.h"
#include "proto/vecshard/v1/common.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

#define REPLICA_ERR_MAX           512
#define REPLICA_MAX_BATCH_DEFAULT 100000
#define REPLICA_EF_SEARCH_DEFAULT 64

enum replica_code {
    REPLICA_OK = 0,
    REPLICA_EINVAL,        /* malformed argument: missing batch, k or ef out of range, bad config */
    REPLICA_EDIM,          /* a vector or query with the wrong number of floats */
    REPLICA_EVALUE,        /* a component NaN, infinite or beyond +-HNSW_MAX_ABS (1e16), or under
                              cosine a norm that is 0 or below FLT_MIN (hnsw_vector_check) */
    REPLICA_EPAYLOAD_SIZE, /* a payload over the limit (64 KiB) */
    REPLICA_EBATCH_SIZE,   /* more points + ids than the limit, or an encoded batch over 128 MiB */
    REPLICA_ELSN_GAP,      /* replica_apply: lsn > applied + 1; *have holds the applied LSN */
    REPLICA_ENOMEM,        /* allocation failed */
    REPLICA_EIO,           /* a disk operation failed */
    REPLICA_EFAILED,       /* an earlier WAL or apply failure stopped writes; close and reopen */
    REPLICA_ECORRUPT,      /* the folder's data cannot be recovered (message says why) */
    REPLICA_EMISMATCH,     /* the folder holds data of another collection/shard/dim/metric/M */
    REPLICA_EUNAPPLIED,    /* a batch reached the WAL but could not be applied (engine out of
                              memory or full): writes are refused; the process should stop, and
                              reopening replays the batch in full */
    REPLICA_EFULL,         /* the index holds 2^32 - 2 slots already */
    REPLICA_EINTERNAL,     /* an engine failure that is neither bad input nor resources */
    REPLICA_ENOTFOUND,     /* replica_wal_iter: the WAL no longer holds that LSN */
};

struct replica_config {
    const char *dir;        /* the replica's folder; created (with parents) if missing */
    const char *collection; /* for messages and the snapshot header */
    uint32_t shard;
    /* From the collection config: dim, metric, M, ef_construction (+ capacity hint, seed). */
    struct hnsw_params hnsw;
    uint32_t ef_search;            /* used when a search passes ef 0; default 64 */
    enum wal_fsync fsync;          /* default always */
    uint64_t wal_segment_bytes;    /* 0: 64 MiB */
    uint64_t snapshot_wal_bytes;   /* background snapshot once the WAL since the last one exceeds
                                      this; 0: this trigger is off */
    uint64_t snapshot_wal_records; /* ... or once this many records were written since; 0: off */
    uint64_t snapshot_age_ms;      /* ... or once the oldest write not in a snapshot is this old
                                      (ms); 0: off. All three 0: no background thread (call
                                      replica_snapshot) */
    int build_threads;             /* threads for large upsert batches; <= 0: all CPUs */
    uint32_t max_batch;            /* upserts + deletes per batch, and ids per get; 0: 100,000 */
    uint32_t max_payload;          /* bytes per payload; 0 (or more than 64 KiB): 64 KiB */
};

/* What replica_open found, for the node's log. */
struct replica_recovery {
    struct snapshot_recovery snapshot; /* snapshots refused (moved aside) and temp files removed */
    uint64_t snapshot_lsn;             /* LSN of the snapshot loaded; 0 if none */
    struct wal_recovery wal;           /* WAL truncation, if any (wal.truncated, wal.reason) */
    bool wal_reset;                    /* the WAL ended before the snapshot and was cleared */
    uint64_t replayed;                 /* WAL records applied after the snapshot */
    uint64_t lsn;                      /* LSN after recovery */
    double seconds;                    /* time spent opening */
};

/* Counters of a replica (ShardReplicaStatus). */
struct replica_stat {
    uint64_t lsn;          /* highest LSN applied */
    uint64_t epoch;        /* highest epoch among the applied records */
    uint64_t count;        /* live points */
    uint64_t deleted;      /* deleted points still linked in the graph */
    uint64_t payloads;     /* points with a payload */
    uint64_t attributes;   /* points with attributes */
    uint64_t snapshot_lsn; /* LSN of the newest snapshot on disk; 0 if none */
    uint64_t disk_bytes;   /* snapshots + WAL segments */
    uint64_t wal_bytes;    /* WAL segments alone */
    uint64_t wal_bytes_since_snapshot;
    uint64_t wal_records_since_snapshot;
    uint64_t memory_bytes;            /* index + payload store */
    uint64_t snapshots_taken;         /* since open */
    int64_t snapshot_unix_ms;         /* when the newest snapshot was written (Unix ms); 0 none */
    bool failed;                      /* writes refused until reopened (see last_error) */
    char last_error[REPLICA_ERR_MAX]; /* last write-path or background-snapshot failure */
};

/* One point of a search or get answer. Pointers lead into the owning replica_results. */
struct replica_point {
    uint64_t id;
    float dist;             /* distance to the query (0 for gets) */
    const float *vector;    /* dim floats when asked for, else NULL (normalised under cosine) */
    const uint8_t *payload; /* NULL when not asked for or the point has none */
    uint32_t payload_len;
    const uint8_t *attrs; /* attribute blob (common/filter/attrs.h); NULL: not asked for or none */
    uint32_t attrs_len;
};

/*
 * The answer of replica_search or replica_get. The caller owns it: set it
 * up with replica_results_init, pass it to any number of calls (each call
 * replaces the previous content and reuses the memory, so a thread that
 * keeps one does not allocate in steady state), release it with
 * replica_results_free. Everything it points to stays valid until the next
 * call with it or its release, whatever happens to the replica meanwhile.
 */
struct replica_results {
    struct replica_point *points; /* n points; search: closest first */
    uint32_t n;
    uint64_t *missing; /* replica_get: ids not found, request order; nmissing of them */
    uint32_t nmissing;
    /* search with target_recall: the ef used and the calibration curve's recall estimate */
    uint32_t ef_used;
    float est_recall;
    /* internal: reusable memory */
    size_t cap_points, cap_missing, cap_bytes, cap_hits;
    uint8_t *bytes;
    struct hnsw_result *hits;
};

/* How a filtered search was answered (docs/filtering.md "Planning"). */
struct replica_plan {
    const char *plan;   /* "exact", "scan", "graph", "post", "none", or "post+<plan>" when
                           post found fewer than k and <plan> answered; NULL: no filter */
    uint64_t points;    /* live points of the replica */
    uint64_t estimated; /* matches the indexes estimated */
    uint64_t scanned;   /* exact / scan: points whose distance was computed */
    uint32_t ef;        /* graph: the candidate-list size; post: the unfiltered search's */
};

/* What a search asks for. */
struct replica_query {
    const float *vector; /* query_len floats (must equal the dim) */
    uint32_t len;
    uint32_t k;  /* 1..10,000 */
    uint32_t ef; /* 0: the config's ef_search; at most 100,000; raised to k */
    bool with_payload, with_vector, with_attributes;
    const char *field; /* name of the query in messages, e.g. "queries[2].vector"; NULL: "query" */
    const struct filter *filter; /* only matching points are hits; NULL: all */
    const char *force_plan;      /* tests, benchmarks: "exact", "scan", "graph", "post"; NULL: plan */
    struct replica_plan *plan;   /* filled when not NULL */
    float target_recall;         /* (0, 1]: automatic ef instead of ef (docs/engine.md); 0: unset */
};

struct replica;

/* Fills c with the defaults; the caller sets dir, collection, shard and hnsw.dim at least. */
void replica_config_init(struct replica_config *c);
/* A static description of a code. */
const char *replica_code_str(int code);
/*
 * The gRPC status code (numeric, grpc/status.h) for a code: EINVAL, EDIM,
 * EVALUE -> INVALID_ARGUMENT (3); EPAYLOAD_SIZE, EBATCH_SIZE, ENOMEM (a real
 * allocation failure only), EFULL -> RESOURCE_EXHAUSTED (8); EFAILED, EIO ->
 * UNAVAILABLE (14); ECORRUPT -> DATA_LOSS (15); EMISMATCH ->
 * FAILED_PRECONDITION (9); EUNAPPLIED, EINTERNAL -> INTERNAL (13); OK and
 * ELSN_GAP (answered in the reply body) -> OK (0).
 */
int replica_code_grpc(int code);

/*
 * Opens the replica in cfg->dir (creating the folder if missing): loads the
 * newest valid snapshot (falling back to the previous one if the newest is
 * damaged), recovers the WAL (cutting a torn tail) and replays the records
 * after the snapshot. Damage followed by valid WAL records fails with
 * REPLICA_ECORRUPT, err naming the segment file and byte offset, and
 * changes no file. An empty folder is an empty replica.
 * *rec (may be NULL) says what recovery found and did. Strings in cfg are
 * copied. *out is the caller's (replica_close).
 */
int replica_open(const struct replica_config *cfg, struct replica **out,
                 struct replica_recovery *rec, char *err);
/*
 * Stops the background snapshot thread, fsyncs the WAL, frees everything.
 * Takes no snapshot. NULL is a no-op. Returns the WAL's final fsync status.
 */
int replica_close(struct replica *r, char *err);
/*
 * Deletes a dropped replica's files (WAL segments, snapshots, temp and
 * .corrupt files) and its folder. The replica must be closed. A folder that
 * does not exist is OK.
 */
int replica_remove_files(const char *dir, char *err);

/*
 * Primary write: validates batch (nothing is written if any field is bad),
 * assigns the next LSN, appends (epoch, batch) to the WAL, applies it
 * (upserts, then deletes; deleting an absent id is not an error) and
 * returns once the WAL policy makes it durable. *lsn gets the LSN. The
 * batch stays the caller's. The replica records the epoch as given; epoch
 * checks against the shard map are the node's. A batch in the WAL is
 * applied in full (vectors and payloads) or the call returns
 * REPLICA_EUNAPPLIED: the replica then refuses writes and the caller should
 * stop the process, so that the next open replays the batch.
 */
int replica_write(struct replica *r, uint64_t epoch, const Vecshard__V1__WriteBatch *batch,
                  uint64_t *lsn, char *err);
/*
 * Backup apply of the primary's record at lsn: lsn == applied + 1 is
 * written and applied like replica_write; lsn <= applied is a duplicate,
 * acknowledged without effect (REPLICA_OK); lsn > applied + 1 is
 * REPLICA_ELSN_GAP. *have (may be NULL) gets the applied LSN afterwards.
 */
int replica_apply(struct replica *r, uint64_t lsn, uint64_t epoch,
                  const Vecshard__V1__WriteBatch *batch, uint64_t *have, char *err);

/* The k nearest live points to q->vector into *res (see struct replica_results). */
int replica_search(struct replica *r, const struct replica_query *q, struct replica_results *res,
                   char *err);
/*
 * Fetches ids[0..n): found points in the order of their first occurrence
 * into res->points, the others into res->missing.
 */
int replica_get(struct replica *r, const uint64_t *ids, uint32_t n, bool with_payload,
                bool with_vector, bool with_attributes, struct replica_results *res, char *err);
/* Live points matching filter (NULL: every live point) into *count. */
int replica_count(struct replica *r, const struct filter *filter, uint64_t *count, char *err);
/*
 * Primary delete by filter: under the write lock, lists up to limit (0:
 * max_batch) live points matching filter and writes their deletion as one
 * batch of ids, like replica_write (so backups replay the same ids).
 * *deleted gets how many; none matching writes nothing (*lsn is then the
 * current LSN).
 */
int replica_delete_matching(struct replica *r, uint64_t epoch, const struct filter *filter,
                            uint32_t limit, uint64_t *lsn, uint32_t *deleted, char *err);
/* Prepares an empty results object. */
void replica_results_init(struct replica_results *res);
/* Frees what res holds (res itself is the caller's). */
void replica_results_free(struct replica_results *res);

/* Fills *st from counters kept in memory: no disk access and no lock that
 * a write or an fsync holds, so metrics and status calls never wait on I/O. */
void replica_status(struct replica *r, struct replica_stat *st);

/*
 * Takes a snapshot now if anything was written since the last one (*taken,
 * may be NULL, says whether it did): copies the state under the write lock,
 * makes it durable without it, keeps the newest two snapshots and deletes
 * the WAL segments that the older of them no longer needs.
 */
int replica_snapshot(struct replica *r, bool *taken, char *err);
/*
 * Unlinks deleted points from the graph (hnsw_repair with build_threads):
 * restores recall after heavy deletes and makes their slots reusable.
 * Searches continue; writes wait for it.
 */
int replica_repair(struct replica *r, char *err);

/* ---------------------------------------------- transfer and digest (replica_transfer.c) */

/*
 * What a TransferShard sender streams, pinned at one moment: the newest
 * snapshot file (an open descriptor, so pruning cannot take it away) and a
 * WAL iterator over the records after it that existed then (its own
 * descriptors, so WAL cleanup cannot either). Independent of the replica
 * once made: it may outlive replica_close. The caller owns it
 * (replica_pin_release).
 */
struct replica_pin {
    int snap_fd;              /* the snapshot file, read from offset 0; -1 when there is none */
    uint64_t snap_lsn;        /* LSN the snapshot covers (0 when there is none) */
    uint64_t snap_bytes;      /* its size */
    struct wal_iter *records; /* records snap_lsn + 1 .. last_lsn (and possibly later ones) */
    uint64_t last_lsn;        /* the replica's LSN at the pin */
    uint64_t last_epoch;      /* epoch of the record at last_lsn */
};

/*
 * Pins the newest snapshot and the WAL after it (see struct replica_pin),
 * under the snapshot lock so neither changes meanwhile. Takes a snapshot
 * first when the replica holds records but no snapshot, or when its WAL no
 * longer reaches back to the newest one. An empty replica gives snap_fd -1
 * and last_lsn 0.
 */
int replica_pin(struct replica *r, struct replica_pin *pin, char *err);
/* Closes what pin holds. Safe on a pin whose replica_pin failed, and twice. */
void replica_pin_release(struct replica_pin *pin);

/* Bytes of a replica digest (docs/replication.md §11). */
#define REPLICA_DIGEST_BYTES 16

/*
 * The 128-bit digest of the live content: every live point in id order,
 * hashing its id (8 bytes little-endian), its vector's bytes and its
 * payload (length as 4 bytes little-endian, then the bytes). Two replicas
 * with the same ids, vectors and payloads have the same digest whatever
 * their graph, slot order or deleted points. Writes wait while it runs
 * (about 1 s per 10^6 128-d points). *points (may be NULL) gets the count.
 */
int replica_digest(struct replica *r, uint8_t out[REPLICA_DIGEST_BYTES], uint64_t *points,
                   char *err);

/* The replica's folder, collection and shard (as configured). */
const char *replica_dir(const struct replica *r);
const char *replica_collection(const struct replica *r);
uint32_t replica_shard(const struct replica *r);
uint32_t replica_dim(const struct replica *r);

/* ---------------------------------------------------------------- replication
 * (docs/replication.md §2, §4; replica_history.c) */

/*
 * The epoch of the record at lsn into *epoch: true when known (lsn 0 is
 * "before the first record", epoch 0; the loaded snapshot's LSN and every
 * LSN up to the applied one after it), false before the snapshot or past
 * the applied LSN.
 */
bool replica_epoch_at(struct replica *r, uint64_t lsn, uint64_t *epoch);
/*
 * The first LSN of the history whose record has an epoch > epoch into *lsn
 * (the applied LSN + 1 when none has): false when the history does not
 * reach back far enough to tell (the snapshot's epoch is already > epoch).
 */
bool replica_first_lsn_after_epoch(struct replica *r, uint64_t epoch, uint64_t *lsn);
/* The LSN the history starts at (the loaded snapshot's; 0 = from the first record). */
uint64_t replica_history_base(struct replica *r);
/*
 * Backup apply of one record as the primary sent it: bytes (len of them,
 * a packed WriteBatch) go to the WAL unchanged with the record's own epoch,
 * and are unpacked once for the apply. Durable after replica_sync. LSN rules as replica_apply (the
 * caller checked the epochs of duplicates). A batch that does not decode is
 * REPLICA_EINVAL.
 */
int replica_apply_packed(struct replica *r, uint64_t lsn, uint64_t epoch, const uint8_t *bytes,
                         size_t len, uint64_t *have, char *err);
/*
 * The durability of replica_apply_packed: records it applied are durable
 * only after replica_sync returns (one fdatasync for a run of them, unless
 * the policy is none). Call it before acknowledging them.
 */
int replica_sync(struct replica *r, char *err);
/* A WAL iterator from from_lsn (wal_iter_open): REPLICA_ENOTFOUND when it was deleted. */
int replica_wal_iter(struct replica *r, uint64_t from_lsn, struct wal_iter **out, char *err);

#endif
