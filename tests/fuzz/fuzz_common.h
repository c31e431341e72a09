/*
 * fuzz_common.h — what the libFuzzer targets of tests/fuzz share: a
 * per-process scratch folder for the decoders that read files, and writing
 * the input into a file there. Single-threaded (libFuzzer calls a target
 * from one thread); the folder is removed at exit.
 */
#ifndef VS_FUZZ_COMMON_H
#define VS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The scratch folder (created on first use; aborts if it cannot be). */
const char *fuzz_dir(void);

/* Writes data into <fuzz_dir>/<name>, replacing it; returns the path
 * (static buffer, valid until the next call). Aborts on I/O errors. */
const char *fuzz_file(const char *name, const uint8_t *data, size_t size);

struct hnsw_index;

/* One k = 4 search of a zero query on idx (what loaded must answer). */
void fuzz_search_once(struct hnsw_index *idx);

/* Removes every file in <fuzz_dir>/<sub> (and the folder itself). */
void fuzz_clear(const char *sub);

#endif
