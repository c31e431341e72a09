/*
 * fuzz_wal — the WAL record scanner (node/storage/wal.c): the input is the
 * first segment of a WAL folder; wal_open recovers it (cutting a torn tail,
 * refusing mid-log damage) and every record left is read back.
 */
#include <stdint.h>
#include <stdio.h>

#include "node/storage/wal.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[128], seg[64];
    wal_segment_name(1, seg, sizeof seg);
    snprintf(name, sizeof name, "wal/%s", seg);
    fuzz_clear("wal");
    fuzz_file(name, data, size);
    char dir[300], err[512];
    snprintf(dir, sizeof dir, "%s/wal", fuzz_dir());
    struct wal_options o;
    wal_options_init(&o);
    o.fsync = WAL_FSYNC_NONE;
    struct wal *w = NULL;
    struct wal_recovery rec;
    if (wal_open(dir, &o, &w, &rec, err) == WAL_OK) {
        struct wal_iter *it = NULL;
        if (wal_iter_open(w, 0, &it, err) == WAL_OK) {
            struct wal_record r;
            bool has = true;
            while (wal_iter_next(it, &r, &has, err) == WAL_OK && has)
                ;
            wal_iter_close(it);
        }
        wal_close(w, err);
    }
    return 0;
}
