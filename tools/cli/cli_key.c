/*
 * cli_key.c — `vecshard key new [NAME ROLE]` and `vecshard key hash KEY`:
 * API keys for the router's --api-keys file (docs/security.md §3). Local
 * only: no router is called.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/util/keyhash.h"
#include "tools/cli/cli.h"

const char *const cli_usage_key =
    "usage: vecshard key new [NAME [ROLE [COLLECTIONS]]]\n"
    "       vecshard key hash KEY\n"
    "  new: prints a random key (vs_ + 43 base64url characters, 256 bits) and the\n"
    "  line of the router's --api-keys file that accepts it (hash only; default\n"
    "  name \"key\", role read; COLLECTIONS a,b limits it). hash: the line's hash of KEY.\n";

int cli_cmd_key(struct cli *c, int argc, char **argv)
{
    (void)c;
    if (argc >= 3 && strcmp(argv[1], "hash") == 0 && argc == 3) {
        char h[KEYHASH_HEX_LEN + 1];
        keyhash_hex(argv[2], h, sizeof h);
        printf("%s\n", h);
        return CLI_OK;
    }
    if (argc >= 2 && argc <= 5 && strcmp(argv[1], "new") == 0) {
        const char *name = argc > 2 ? argv[2] : "key", *role = argc > 3 ? argv[3] : "read";
        if (strcmp(role, "read") && strcmp(role, "write") && strcmp(role, "admin")) {
            fprintf(stderr, "vecshard key new: ROLE is \"%s\", want read, write or admin\n", role);
            return CLI_USAGE;
        }
        unsigned char raw[32];
        if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
            perror("vecshard key new: getrandom");
            return CLI_FAIL;
        }
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char key[3 + 44] = "vs_";
        size_t n = 3;
        for (size_t i = 0; i < 32; i += 3) { /* base64url, no padding */
            unsigned v = raw[i] << 16 | (i + 1 < 32 ? raw[i + 1] << 8 : 0) |
                         (i + 2 < 32 ? raw[i + 2] : 0);
            int chars = i + 2 < 32 ? 4 : 3;
            for (int j = 0; j < chars; j++)
                key[n++] = b64[(v >> (18 - 6 * j)) & 63];
        }
        key[n] = '\0';
        char h[KEYHASH_HEX_LEN + 1];
        keyhash_hex(key, h, sizeof h);
        printf("key:  %s\nline: %s %s %s%s%s\n", key, name, role, h, argc > 4 ? " collections=" : "",
               argc > 4 ? argv[4] : "");
        return CLI_OK;
    }
    fputs(cli_usage_key, stderr);
    return CLI_USAGE;
}
