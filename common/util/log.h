/*
 * log.h — structured logging for every vecshard process: one logfmt line per
 * event on stderr,
 *
 *   ts=2026-11-21T10:00:00.123Z level=info msg="opened replica" collection=docs shard=3
 *
 * so operators can grep it and log shippers (Loki, Vector, fluent-bit) can
 * parse it without configuration. The message is always quoted; the fields
 * are a printf format written by the caller as `key=value` pairs. A value
 * that may hold spaces, quotes or newlines (error text, paths, addresses
 * given by users) goes through log_quote().
 *
 * Thread safety: each line is formatted into a stack buffer and written with
 * one write(2), so lines from different threads never interleave (lines are
 * cut at LOG_LINE_MAX bytes). The level is a process-wide atomic; the
 * request id (log_set_request_id) is per thread.
 *
 * libc only: common/util is linked into every binary, the engine included.
 */
#ifndef VS_UTIL_LOG_H
#define VS_UTIL_LOG_H

#include <stdbool.h>
#include <stddef.h>

#define LOG_LINE_MAX 4096

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
};

/* Parses "debug", "info", "warn" (or "warning") or "error"; -1 if none. */
int log_level_parse(const char *s);

/* The level's lower-case name. */
const char *log_level_name(enum log_level level);

/* Sets the lowest level written (default LOG_INFO). Thread-safe. */
void log_set_level(enum log_level level);

/* True when a line at `level` would be written (skip costly field building). */
bool log_enabled(enum log_level level);

/*
 * Writes one line: ts, level, msg (quoted), then the fields produced by
 * `fields` (a printf format of space-separated key=value pairs; may be NULL
 * or ""). Never fails visibly: a line that cannot be written is dropped.
 */
void log_write(enum log_level level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Returns s as a logfmt value: unchanged when it is a non-empty run of
 * printable characters without space, '"', '=' or '\', otherwise in double
 * quotes with '"', '\' and control characters escaped. The result lives in
 * one of 8 thread-local buffers of 1 KiB (longer values are cut), so up to
 * 8 quoted values may appear in one log_write call. NULL gives "".
 */
const char *log_quote(const char *s);

/*
 * Sets this thread's request id (NULL or "" clears it): while set, every
 * line the thread writes ends with `request_id=<id>`, so the lines about one
 * call (in its handler and everything it calls on that thread) can be
 * followed across processes. The id is copied (cut at LOG_REQUEST_ID_MAX
 * bytes) and written through log_quote.
 */
#define LOG_REQUEST_ID_MAX 64
void log_set_request_id(const char *id);

/* This thread's request id ("" when none); thread-local storage. */
const char *log_request_id(void);

#define log_debug(msg, ...) log_write(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...)  log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

#endif
