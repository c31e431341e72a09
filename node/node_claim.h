/*
 * node_claim.h — vecshard-node's check, at start-up, that the data dir is
 * its own (docs/node.md, "Data dir identity").
 *
 * The first start on a data dir without an identity file writes one
 * (node/storage/identity.h): node id, cluster (the etcd prefix), creation time. Every
 * later start compares: another node id or another cluster, or a damaged
 * identity file, refuses to start (the caller exits 2) unless the operator
 * chose --identity-mismatch adopt (rewrite the identity for this node and
 * keep the replicas) or wipe (move every replica into the trash, start with
 * a fresh identity). The check runs before any replica is opened, so a
 * wrong --node-id can no longer make the node delete what etcd does not
 * assign to that id.
 */
#ifndef VS_NODE_CLAIM_H
#define VS_NODE_CLAIM_H

#include <stddef.h>
#include <stdint.h>

/* What to do when the data dir belongs to another node or cluster (--identity-mismatch). */
enum node_claim_mode {
    NODE_CLAIM_REFUSE = 0, /* exit 2 naming both ids and the file */
    NODE_CLAIM_ADOPT,      /* rewrite the identity to this node id / cluster, keep the data */
    NODE_CLAIM_WIPE,       /* move every replica into the trash, write a fresh identity */
};

/* The mode named s ("refuse", "adopt", "wipe"), or -1. */
int node_claim_mode_parse(const char *s);

/*
 * Creates data_dir if missing, then checks or writes its identity for
 * (node_id, cluster) under `mode`. On success *created_at is the data dir's
 * creation time (Unix ms) and 0 is returned; -1 means refuse to start, with
 * the reason (naming both ids and the file) in err.
 */
int node_claim_data_dir(const char *data_dir, const char *node_id, const char *cluster, int mode,
                        int64_t *created_at, char *err, size_t errlen);

#endif
