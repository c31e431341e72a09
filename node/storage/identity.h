/*
 * identity.h — the owner record of a data dir, <data-dir>/node-identity.txt:
 * which node id and which cluster (etcd prefix) the replicas in it belong
 * to, and when the data dir was first used.
 *
 * vecshard-node writes it at its first start on an empty data dir and
 * compares it at every later start, so that a node started with another
 * --node-id or against another cluster refuses to run instead of deleting
 * replicas it does not recognise (docs/node.md, "Data dir identity"). The
 * creation time also tells a replica that vanished from disk (the data dir
 * was emptied or replaced) from one that never existed (node_shards.c).
 *
 * The file is five text lines, the last a CRC-32C of the bytes before it
 * (format in docs/storage.md); it is written to a temp file, fsynced,
 * renamed and the folder fsynced. Every read validates all of it. libc and
 * common/util/crc32c only; functions return an enum identity_code and fill
 * err (IDENTITY_ERR_MAX bytes) naming the file and what is wrong.
 */
#ifndef VS_NODE_IDENTITY_H
#define VS_NODE_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#define IDENTITY_FILE        "node-identity.txt"
#define IDENTITY_VERSION     1
#define IDENTITY_ERR_MAX     512
#define IDENTITY_ID_MAX      128 /* node ids, as node_config checks them */
#define IDENTITY_CLUSTER_MAX 256
#define IDENTITY_TEXT_MAX    1024 /* an encoded identity is never longer */

enum identity_code {
    IDENTITY_OK = 0,
    IDENTITY_ENOENT,   /* no identity file: the data dir was never claimed */
    IDENTITY_ECORRUPT, /* the file exists but is damaged (checksum, syntax, version) */
    IDENTITY_EINVAL,   /* a field to encode is empty, too long or holds a newline */
    IDENTITY_EIO,      /* reading or writing the file failed */
};

/* Who owns a data dir. */
struct node_identity {
    uint32_t version;                       /* IDENTITY_VERSION */
    char node_id[IDENTITY_ID_MAX + 1];      /* --node-id */
    char cluster[IDENTITY_CLUSTER_MAX + 1]; /* --etcd-prefix */
    int64_t created_at;                     /* Unix ms of the first start on this data dir */
};

/* Encodes id into buf (size bytes, IDENTITY_TEXT_MAX is enough); *len = bytes written. */
int identity_encode(const struct node_identity *id, char *buf, size_t size, size_t *len, char *err);

/* Decodes and checks an encoded identity (len bytes) into *out; `what` names it in err. */
int identity_decode(const char *buf, size_t len, const char *what, struct node_identity *out,
                    char *err);

/* Reads <data_dir>/node-identity.txt into *out (IDENTITY_ENOENT when there is none). */
int identity_read(const char *data_dir, struct node_identity *out, char *err);

/* Writes <data_dir>/node-identity.txt atomically (temp file, fsync, rename, folder fsync). */
int identity_write(const char *data_dir, const struct node_identity *id, char *err);

/* "ok", "no identity file", ... for logs. */
const char *identity_code_str(int code);

#endif
