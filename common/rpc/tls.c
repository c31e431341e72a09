/*
 * tls.c — TLS credentials of servers and channels, and their reload
 * (rpc.h, "TLS"; docs/security.md).
 *
 * Not built yet: every TLS configuration is refused at create, and reload
 * has nothing to do.
 */
#include <stdio.h>

#include "common/rpc/rpc.h"

int rpc_server_reload_tls(struct rpc_server *s, char *err, size_t errlen)
{
    (void)s;
    if (err != NULL && errlen > 0) err[0] = '\0';
    return 0;
}

int rpc_client_reload_tls(struct rpc_client *cl, char *err, size_t errlen)
{
    (void)cl;
    if (err != NULL && errlen > 0) err[0] = '\0';
    return 0;
}
