/*
 * start.c — the start-up of the --http endpoint shared by vecshard-node and
 * vecshard-router: off when the flag is empty, otherwise bind, log the bound
 * address (the line scripts and tests wait for) or the error.
 */
#include "common/http/http.h"

#include <stdio.h>

#include "common/util/log.h"
#include "common/util/proc.h"

int http_start_logged(const struct http_config *cfg, struct http_server **out)
{
    *out = NULL;
    if (cfg->addr == NULL || cfg->addr[0] == '\0') return 0;
    char err[256];
    int port = 0;
    *out = http_start(cfg, &port, err, sizeof err);
    if (*out == NULL) {
        log_error("cannot start the HTTP endpoint", "http=%s error=%s", log_quote(cfg->addr),
                  log_quote(err));
        return -1;
    }
    char bound[300];
    proc_bound_addr(cfg->addr, port, bound, sizeof bound);
    log_info("http listening", "addr=%s", log_quote(bound));
    return 0;
}
