/*
 * name.c — the collection name rule (name.h). Names become etcd keys and
 * directory names, so the rule admits no separator, dot or NUL.
 */
#include "common/cluster/name.h"

#include <stdio.h>
#include <string.h>

/* True for the bytes a name may hold. */
static bool name_byte_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

bool cluster_name_ok(const char *s, size_t n)
{
    if (s == NULL || n == 0 || n > CLUSTER_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!name_byte_ok(s[i])) return false;
    return true;
}

int cluster_name_check(const char *field, const char *s, size_t n, char *err, size_t errlen)
{
    if (cluster_name_ok(s, n)) return 0;
    const char *nul = s != NULL ? memchr(s, '\0', n) : NULL;
    if (s == NULL || n == 0)
        snprintf(err, errlen, "%s is empty", field);
    else if (nul != NULL)
        snprintf(err, errlen, "%s: contains a NUL byte at offset %zu", field, (size_t)(nul - s));
    else
        snprintf(err, errlen, "%s \"%.*s\" is not a valid name ([A-Za-z0-9_-]{1,64})", field,
                 n > 80 ? 80 : (int)n, s);
    return -1;
}
