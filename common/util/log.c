/*
 * log.c — the logfmt line writer behind log.h.
 *
 * A line is built in a fixed stack buffer (no malloc, so logging works when
 * memory is short) and handed to the kernel with a single write(2) on fd 2:
 * POSIX keeps such a write whole with respect to other writers of the same
 * file as long as it is one call, which is what keeps concurrent lines from
 * interleaving without a lock. EINTR is retried; a short write finishes the
 * rest (only possible on pipes that are full, where interleaving is the
 * lesser evil than losing the tail).
 */
#define _GNU_SOURCE
#include "common/util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define QUOTE_BUFS 8
#define QUOTE_MAX  1024

static atomic_int g_level = LOG_INFO;
static __thread char t_request_id[LOG_REQUEST_ID_MAX + 1];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Parses a level name, case-insensitively. */
int log_level_parse(const char *s)
{
    if (s == NULL) return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0) return i;
    if (strcasecmp(s, "warning") == 0) return LOG_WARN;
    return -1;
}

/* Name of a level; "info" for out-of-range values. */
const char *log_level_name(enum log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "info";
}

/* Sets the process-wide threshold. */
void log_set_level(enum log_level level)
{
    atomic_store(&g_level, (int)level);
}

/* True if lines at `level` pass the threshold. */
bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&g_level);
}

/* Appends s to buf[*pos..size) as a quoted, escaped string; cuts at the end. */
static void put_quoted(char *buf, size_t size, size_t *pos, const char *s)
{
    size_t p = *pos;
    if (p + 1 < size) buf[p++] = '"';
    for (; s != NULL && *s != '\0' && p + 3 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[p++] = '\\';
            buf[p++] = (char)ch;
        } else if (ch == '\n') {
            buf[p++] = '\\';
            buf[p++] = 'n';
        } else if (ch == '\t') {
            buf[p++] = '\\';
            buf[p++] = 't';
        } else if (ch < 0x20 || ch == 0x7f) {
            buf[p++] = '?';
        } else {
            buf[p++] = (char)ch;
        }
    }
    if (p + 1 < size) buf[p++] = '"';
    buf[p < size ? p : size - 1] = '\0';
    *pos = p;
}

/* True when s can be written as a bare logfmt value. */
static bool is_bare(const char *s)
{
    if (*s == '\0') return false;
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= ' ' || ch == '"' || ch == '=' || ch == '\\' || ch == 0x7f) return false;
    }
    return true;
}

/* Quotes s into a rotating thread-local buffer when it needs quoting. */
const char *log_quote(const char *s)
{
    static __thread char bufs[QUOTE_BUFS][QUOTE_MAX];
    static __thread unsigned next;
    if (s == NULL) s = "";
    if (is_bare(s)) return s;
    char *b = bufs[next++ % QUOTE_BUFS];
    size_t pos = 0;
    put_quoted(b, QUOTE_MAX, &pos, s);
    return b;
}

/* Sets (or with NULL / "" clears) this thread's request id. */
void log_set_request_id(const char *id)
{
    snprintf(t_request_id, sizeof t_request_id, "%s", id != NULL ? id : "");
}

/* This thread's request id, "" when none. */
const char *log_request_id(void)
{
    return t_request_id;
}

/* Writes all of buf to fd 2, retrying EINTR and short writes. */
static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Formats and writes one line (see log.h). */
void log_write(enum log_level level, const char *msg, const char *fields, ...)
{
    if (!log_enabled(level)) return;
    int saved_errno = errno;
    char line[LOG_LINE_MAX];
    size_t pos = 0;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s msg=", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), log_level_name(level));
    pos = n > 0 ? (size_t)n : 0;
    put_quoted(line, sizeof line - 1, &pos, msg);

    if (fields != NULL && fields[0] != '\0' && pos + 2 < sizeof line - 1) {
        line[pos++] = ' ';
        va_list ap;
        va_start(ap, fields);
        n = vsnprintf(line + pos, sizeof line - 1 - pos, fields, ap);
        va_end(ap);
        if (n > 0) pos += (size_t)n < sizeof line - 1 - pos ? (size_t)n : sizeof line - 2 - pos;
    }
    if (t_request_id[0] != '\0' && pos + 2 < sizeof line - 1) {
        n = snprintf(line + pos, sizeof line - 1 - pos, " request_id=%s", log_quote(t_request_id));
        if (n > 0) pos += (size_t)n < sizeof line - 1 - pos ? (size_t)n : sizeof line - 2 - pos;
    }
    line[pos++] = '\n';
    write_all(line, pos);
    errno = saved_errno;
}
