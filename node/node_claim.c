/*
 * node_claim.c — the start-up ownership check of the data dir (see
 * node_claim.h). A wipe moves each replica folder <coll>/<shard>/ into the
 * trash marked `wiped` (never restored, purged once etcd no longer assigns
 * it; trash.h), then removes the emptied collection folders, then
 * writes the new identity last: a crash in the middle leaves the old
 * identity, and the next start with the same flag finishes the job.
 */
#define _GNU_SOURCE
#include "node/node_claim.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util/log.h"
#include "node/storage/dir.h"
#include "node/storage/identity.h"
#include "node/node_shards.h"
#include "node/storage/trash.h"

/* Unix milliseconds now. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses a --identity-mismatch word. */
int node_claim_mode_parse(const char *s)
{
    if (strcmp(s, "refuse") == 0) return NODE_CLAIM_REFUSE;
    if (strcmp(s, "adopt") == 0) return NODE_CLAIM_ADOPT;
    if (strcmp(s, "wipe") == 0) return NODE_CLAIM_WIPE;
    return -1;
}

/* created_at of <cdir>/collection.json, 0 if it cannot be read. */
static int64_t collection_created_at(const char *cdir)
{
    char path[PATH_MAX], buf[8192], err[NODE_ERR_MAX];
    if (snprintf(path, sizeof path, "%s/collection.json", cdir) >= (int)sizeof path) return 0;
    FILE *f = fopen(path, "re");
    if (f == NULL) return 0;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    struct node_collection c;
    return node_collection_parse(buf, n, &c, err, sizeof err) == 0 ? c.created_at : 0;
}

/* Moves every replica folder of data_dir into the trash (wiped). 0, or -1 with err. */
static int wipe(const char *data_dir, char *err, size_t errlen)
{
    DIR *d = opendir(data_dir);
    if (d == NULL) {
        snprintf(err, errlen, "open %s: %s", data_dir, strerror(errno));
        return -1;
    }
    int rc = 0, moved = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!cluster_name_ok(de->d_name, strlen(de->d_name))) continue;
        char cdir[PATH_MAX];
        if (snprintf(cdir, sizeof cdir, "%s/%s", data_dir, de->d_name) >= (int)sizeof cdir - 32)
            continue;
        DIR *sd = opendir(cdir);
        if (sd == NULL) continue;
        int64_t created_at = collection_created_at(cdir);
        struct dirent *se;
        while (rc == 0 && (se = readdir(sd)) != NULL) {
            char *end;
            unsigned long sh = strtoul(se->d_name, &end, 10);
            if (se->d_name[0] < '0' || se->d_name[0] > '9' || *end != '\0' || sh > UINT32_MAX)
                continue;
            char src[PATH_MAX], terr[TRASH_ERR_MAX], name[256];
            if (snprintf(src, sizeof src, "%s/%s", cdir, se->d_name) >= (int)sizeof src) continue;
            if (trash_move(data_dir, src, de->d_name, (uint32_t)sh, created_at, true, name, terr) !=
                0) {
                snprintf(err, errlen, "wipe: %s", terr);
                rc = -1;
                break;
            }
            log_warn("wiped replica into the trash", "collection=%s shard=%lu trash=%s", de->d_name,
                     sh, log_quote(name));
            moved++;
        }
        closedir(sd);
        char cfile[PATH_MAX];
        if (rc == 0 &&
            snprintf(cfile, sizeof cfile, "%s/collection.json", cdir) < (int)sizeof cfile) {
            unlink(cfile);
            rmdir(cdir);
        }
    }
    closedir(d);
    if (rc == 0) dir_fsync(data_dir, NULL, 0);
    if (rc == 0)
        log_warn("data dir wiped", "data_dir=%s replicas_trashed=%d", log_quote(data_dir), moved);
    return rc;
}

/* Checks or writes the data dir's identity (see node_claim.h). */
int node_claim_data_dir(const char *data_dir, const char *node_id, const char *cluster, int mode,
                        int64_t *created_at, char *err, size_t errlen)
{
    char ierr[IDENTITY_ERR_MAX], path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" IDENTITY_FILE, data_dir);
    if (dir_mkdirs(data_dir) != 0) {
        snprintf(err, errlen, "cannot create data dir %s: %s", data_dir, strerror(errno));
        return -1;
    }
    struct node_identity have, want = {.version = IDENTITY_VERSION, .created_at = now_ms()};
    snprintf(want.node_id, sizeof want.node_id, "%s", node_id);
    snprintf(want.cluster, sizeof want.cluster, "%s", cluster);
    int rc = identity_read(data_dir, &have, ierr);
    if (rc == IDENTITY_OK && strcmp(have.node_id, node_id) == 0 &&
        strcmp(have.cluster, cluster) == 0) {
        *created_at = have.created_at;
        return 0;
    }
    if (rc == IDENTITY_EIO) {
        snprintf(err, errlen, "cannot read the data dir identity: %s", ierr);
        return -1;
    }
    const char *what = "first start on this data dir";
    if (rc == IDENTITY_ECORRUPT) {
        if (mode == NODE_CLAIM_REFUSE) {
            snprintf(err, errlen,
                     "the data dir identity file is damaged (%s); refusing to start as node "
                     "\"%s\". If this data dir is this node's, start with --identity-mismatch "
                     "adopt; to discard its replicas, --identity-mismatch wipe",
                     ierr, node_id);
            return -1;
        }
        what = "identity file was damaged";
    } else if (rc == IDENTITY_OK) {
        if (mode == NODE_CLAIM_REFUSE) {
            snprintf(err, errlen,
                     "data dir %s belongs to node \"%s\" of cluster \"%s\" (%s), not to node "
                     "\"%s\" of cluster \"%s\"; refusing to start. Start with --node-id %s "
                     "--etcd-prefix %s, or choose --identity-mismatch adopt (keep the data as "
                     "node \"%s\") or wipe (move it to the trash and start empty)",
                     data_dir, have.node_id, have.cluster, path, node_id, cluster, have.node_id,
                     have.cluster, node_id);
            return -1;
        }
        what = "identity belonged to another node or cluster";
        if (mode == NODE_CLAIM_ADOPT) want.created_at = have.created_at;
    }
    if (rc != IDENTITY_ENOENT && mode == NODE_CLAIM_WIPE && wipe(data_dir, err, errlen) != 0)
        return -1;
    if (identity_write(data_dir, &want, ierr) != IDENTITY_OK) {
        snprintf(err, errlen, "cannot write the data dir identity: %s", ierr);
        return -1;
    }
    if (rc == IDENTITY_ENOENT)
        log_info("data dir claimed", "path=%s node_id=%s cluster=%s reason=%s", log_quote(path),
                 node_id, log_quote(cluster), log_quote(what));
    else
        log_warn(mode == NODE_CLAIM_ADOPT ? "data dir adopted (--identity-mismatch adopt)"
                                          : "data dir wiped and claimed (--identity-mismatch wipe)",
                 "path=%s old_node_id=%s old_cluster=%s node_id=%s cluster=%s reason=%s",
                 log_quote(path), rc == IDENTITY_OK ? have.node_id : "?",
                 log_quote(rc == IDENTITY_OK ? have.cluster : "?"), node_id, log_quote(cluster),
                 log_quote(what));
    *created_at = want.created_at;
    return 0;
}
