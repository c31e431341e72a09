/*
 * test_auth.c — the API key file parser and the check (router/auth.c).
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util/keyhash.h"
#include "router/auth.h"
#include "tests/unit/router/router_test.h"

static char path[64];

/* Writes text to a temp file (path) and loads it; NULL with err on failure. */
static struct auth_keys *load(const char *text, char *err)
{
    snprintf(path, sizeof path, "/tmp/vs-auth-XXXXXX");
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    struct auth_keys *k = auth_keys_load(path, err, AUTH_ERR_MAX);
    unlink(path);
    return k;
}

static char *line(char *buf, size_t n, const char *name, const char *role, const char *key,
                  const char *scope)
{
    char h[KEYHASH_HEX_LEN + 1];
    keyhash_hex(key, h, sizeof h);
    snprintf(buf, n, "%s %s %s%s%s\n", name, role, h, scope ? " collections=" : "",
             scope ? scope : "");
    return buf;
}

static void test_roles_and_codes(void)
{
    char a[200], b[200], c[200], text[700], err[AUTH_ERR_MAX], msg[AUTH_ERR_MAX];
    snprintf(text, sizeof text, "# comment\n\n%s  %s%s", line(a, sizeof a, "r", "read", "kr", NULL),
             line(b, sizeof b, "w", "write", "kw", NULL), line(c, sizeof c, "s", "admin", "ks", "x,y"));
    struct auth_keys *k = load(text, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(k);
    CU_ASSERT_EQUAL(auth_keys_count(k), 3);
    CU_ASSERT_EQUAL(auth_keys_check(k, NULL, "Search", "x", msg, sizeof msg),
                    GRPC_STATUS_UNAUTHENTICATED);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Basic kr", "Search", "x", msg, sizeof msg),
                    GRPC_STATUS_UNAUTHENTICATED);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer nope", "Search", "x", msg, sizeof msg),
                    GRPC_STATUS_UNAUTHENTICATED);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer kr", "Search", "x", msg, sizeof msg), GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer kr", "Upsert", "x", msg, sizeof msg),
                    GRPC_STATUS_PERMISSION_DENIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "needs write"));
    CU_ASSERT_EQUAL(auth_keys_check(k, "bearer kw", "Upsert", "x", msg, sizeof msg), GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer kw", "DropCollection", "x", msg, sizeof msg),
                    GRPC_STATUS_PERMISSION_DENIED);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer kw", "SomeNewMethod", "", msg, sizeof msg),
                    GRPC_STATUS_PERMISSION_DENIED); /* unknown methods need admin */
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer ks", "DropCollection", "y", msg, sizeof msg),
                    GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer ks", "DropCollection", "z", msg, sizeof msg),
                    GRPC_STATUS_PERMISSION_DENIED);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer ks", "ListCollections", "", msg, sizeof msg),
                    GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(auth_keys_check(k, "Bearer ks", "Drain", "", msg, sizeof msg),
                    GRPC_STATUS_PERMISSION_DENIED);
    auth_keys_free(k);
}

static void test_bad_lines(void)
{
    static const char *const bad[] = {
        "a root sha256:" "0000000000000000000000000000000000000000000000000000000000000000\n",
        "a read md5:0000\n",
        "a read sha256:00\n",
        "a read sha256:" "zz00000000000000000000000000000000000000000000000000000000000000\n",
        "a read\n",
        "b@d read sha256:" "0000000000000000000000000000000000000000000000000000000000000000\n",
        "a read sha256:" "0000000000000000000000000000000000000000000000000000000000000000 scope=x\n",
        "a read sha256:" "0000000000000000000000000000000000000000000000000000000000000000\n"
        "a write sha256:" "1111111111111111111111111111111111111111111111111111111111111111\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[AUTH_ERR_MAX] = "";
        struct auth_keys *k = load(bad[i], err);
        CU_ASSERT_PTR_NULL(k);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, path)); /* names the file ... */
        CU_ASSERT_PTR_NOT_NULL(strchr(err, ':'));  /* ... and the line */
        auth_keys_free(k);
    }
    char err[AUTH_ERR_MAX];
    CU_ASSERT_PTR_NULL(auth_keys_load("/nonexistent/keys", err, sizeof err));
}

void register_auth_tests(void)
{
    CU_pSuite s = CU_add_suite("auth", NULL, NULL);
    CU_add_test(s, "roles, scopes and codes", test_roles_and_codes);
    CU_add_test(s, "bad lines name file:line", test_bad_lines);
}
