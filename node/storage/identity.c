/*
 * identity.c — encoding, checking and atomic writing of the data dir's
 * owner record (see identity.h). The text form is
 *
 *   vecshard-node-identity 1
 *   node_id: <id>
 *   cluster: <etcd prefix>
 *   created_at: <Unix ms>
 *   crc32c: <8 hex digits, CRC-32C of every byte before this line>
 *
 * Text, so that an operator can read it with cat; a checksum, so that a torn
 * or bit-flipped file is refused instead of being taken for another owner.
 * Decoding accepts exactly this form (fields in this order, one trailing
 * newline) and nothing else.
 */
#define _GNU_SOURCE
#include "node/storage/identity.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util/crc32c.h"
#include "node/storage/dir.h"

#define MAGIC "vecshard-node-identity"

/* Formats err and returns code. */
static int fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, IDENTITY_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* True when s is non-empty, at most max bytes and free of control characters. */
static bool field_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

/* Encodes an identity (see the file comment). */
int identity_encode(const struct node_identity *id, char *buf, size_t size, size_t *len, char *err)
{
    if (!field_ok(id->node_id, IDENTITY_ID_MAX))
        return fail(err, IDENTITY_EINVAL, "identity node_id is empty, too long or not printable");
    if (!field_ok(id->cluster, IDENTITY_CLUSTER_MAX))
        return fail(err, IDENTITY_EINVAL, "identity cluster is empty, too long or not printable");
    int n = snprintf(buf, size, MAGIC " %u\nnode_id: %s\ncluster: %s\ncreated_at: %" PRId64 "\n",
                     id->version, id->node_id, id->cluster, id->created_at);
    if (n < 0 || (size_t)n >= size)
        return fail(err, IDENTITY_EINVAL, "identity does not fit in %zu bytes", size);
    uint32_t crc = crc32c(buf, (size_t)n);
    int m = snprintf(buf + n, size - (size_t)n, "crc32c: %08" PRIx32 "\n", crc);
    if (m < 0 || (size_t)(n + m) >= size)
        return fail(err, IDENTITY_EINVAL, "identity does not fit in %zu bytes", size);
    *len = (size_t)(n + m);
    return IDENTITY_OK;
}

/* Reads the line "<key>: <value>\n" at *p (end at end) into val; false if not that. */
static bool take_line(const char **p, const char *end, const char *key, char *val, size_t size)
{
    size_t kl = strlen(key);
    if ((size_t)(end - *p) < kl + 2 || memcmp(*p, key, kl) != 0 || (*p)[kl] != ':' ||
        (*p)[kl + 1] != ' ')
        return false;
    const char *v = *p + kl + 2;
    const char *nl = memchr(v, '\n', (size_t)(end - v));
    if (nl == NULL || (size_t)(nl - v) >= size || nl == v) return false;
    memcpy(val, v, (size_t)(nl - v));
    val[nl - v] = '\0';
    if (memchr(val, '\0', (size_t)(nl - v)) != NULL) return false;
    *p = nl + 1;
    return true;
}

/* Parses a decimal int64 (optional '-'); false on anything else. */
static bool parse_i64(const char *s, int64_t *out)
{
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno != 0 || e == s || *e != '\0' || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
        return false;
    *out = v;
    return true;
}

/* Decodes and checks an identity (see the file comment). */
int identity_decode(const char *buf, size_t len, const char *what, struct node_identity *out,
                    char *err)
{
    memset(out, 0, sizeof *out);
    const char *p = buf, *end = buf + len;
    char line[IDENTITY_CLUSTER_MAX + 2];
    const char *nl = memchr(p, '\n', len);
    size_t ml = strlen(MAGIC);
    if (nl == NULL || (size_t)(nl - p) <= ml + 1 || memcmp(p, MAGIC " ", ml + 1) != 0)
        return fail(err, IDENTITY_ECORRUPT, "%s: first line is not \"" MAGIC " <version>\"", what);
    char vers[16];
    size_t vl = (size_t)(nl - p) - ml - 1;
    if (vl >= sizeof vers) return fail(err, IDENTITY_ECORRUPT, "%s: bad format version", what);
    memcpy(vers, p + ml + 1, vl);
    vers[vl] = '\0';
    int64_t v;
    if (!parse_i64(vers, &v) || v != IDENTITY_VERSION)
        return fail(err, IDENTITY_ECORRUPT, "%s: format version \"%s\" is not %d", what, vers,
                    IDENTITY_VERSION);
    out->version = (uint32_t)v;
    p = nl + 1;
    if (!take_line(&p, end, "node_id", out->node_id, sizeof out->node_id))
        return fail(err, IDENTITY_ECORRUPT, "%s: line 2 is not \"node_id: <id>\"", what);
    if (!take_line(&p, end, "cluster", out->cluster, sizeof out->cluster))
        return fail(err, IDENTITY_ECORRUPT, "%s: line 3 is not \"cluster: <prefix>\"", what);
    if (!take_line(&p, end, "created_at", line, sizeof line) || !parse_i64(line, &out->created_at))
        return fail(err, IDENTITY_ECORRUPT, "%s: line 4 is not \"created_at: <Unix ms>\"", what);
    size_t covered = (size_t)(p - buf);
    char crc_text[16];
    if (!take_line(&p, end, "crc32c", crc_text, sizeof crc_text) || strlen(crc_text) != 8 ||
        strspn(crc_text, "0123456789abcdef") != 8)
        return fail(err, IDENTITY_ECORRUPT,
                    "%s: line 5 is not \"crc32c: <8 hex digits>\" (file truncated?)", what);
    if (p != end)
        return fail(err, IDENTITY_ECORRUPT, "%s: %zu unexpected bytes after the checksum", what,
                    (size_t)(end - p));
    uint32_t want = (uint32_t)strtoul(crc_text, NULL, 16), got = crc32c(buf, covered);
    if (want != got)
        return fail(err, IDENTITY_ECORRUPT,
                    "%s: checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32 ")", what,
                    want, got);
    return IDENTITY_OK;
}

/* Reads and decodes <data_dir>/node-identity.txt. */
int identity_read(const char *data_dir, struct node_identity *out, char *err)
{
    char path[4096], buf[IDENTITY_TEXT_MAX + 1];
    if (snprintf(path, sizeof path, "%s/" IDENTITY_FILE, data_dir) >= (int)sizeof path)
        return fail(err, IDENTITY_EINVAL, "data dir path is too long");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? fail(err, IDENTITY_ENOENT, "%s does not exist", path)
                               : fail(err, IDENTITY_EIO, "open %s: %s", path, strerror(errno));
    size_t n = 0;
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return fail(err, IDENTITY_EIO, "read %s: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > IDENTITY_TEXT_MAX)
        return fail(err, IDENTITY_ECORRUPT, "%s: longer than %d bytes", path, IDENTITY_TEXT_MAX);
    return identity_decode(buf, n, path, out, err);
}

/* Writes <data_dir>/node-identity.txt through a temp file. */
int identity_write(const char *data_dir, const struct node_identity *id, char *err)
{
    char path[4096], tmp[4096], buf[IDENTITY_TEXT_MAX];
    size_t len;
    int rc = identity_encode(id, buf, sizeof buf, &len, err);
    if (rc != IDENTITY_OK) return rc;
    if (snprintf(path, sizeof path, "%s/" IDENTITY_FILE, data_dir) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/" IDENTITY_FILE ".tmp", data_dir) >= (int)sizeof tmp)
        return fail(err, IDENTITY_EINVAL, "data dir path is too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail(err, IDENTITY_EIO, "create %s: %s", tmp, strerror(errno));
    if (write(fd, buf, len) != (ssize_t)len || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return fail(err, IDENTITY_EIO, "write %s: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fail(err, IDENTITY_EIO, "rename %s to %s: %s", tmp, path, strerror(e));
    }
    char derr[256];
    if (dir_fsync(data_dir, derr, sizeof derr) != 0) return fail(err, IDENTITY_EIO, "%s", derr);
    return IDENTITY_OK;
}

/* Short name of a code. */
const char *identity_code_str(int code)
{
    switch (code) {
    case IDENTITY_OK:
        return "ok";
    case IDENTITY_ENOENT:
        return "no identity file";
    case IDENTITY_ECORRUPT:
        return "damaged identity file";
    case IDENTITY_EINVAL:
        return "invalid identity";
    case IDENTITY_EIO:
        return "I/O error";
    default:
        return "unknown";
    }
}
