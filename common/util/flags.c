/*
 * flags.c — table-driven flag and environment parsing (see flags.h).
 *
 * One converter, apply(), turns a flag's text into its field, whether the
 * text is the table's default, an environment variable or a command-line
 * argument; only the source named in the message differs. So a default in
 * the table is checked like user input, and a process's --help, its
 * environment and its documentation cannot drift apart.
 */
#define _GNU_SOURCE
#include "common/util/flags.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Environment variable name of a flag ("VECSHARD_NODE_ID"). */
static void env_name(const struct flags_spec *f, char *buf, size_t size)
{
    size_t p = (size_t)snprintf(buf, size, "VECSHARD_");
    for (const char *s = f->name; *s != '\0' && p + 1 < size; s++)
        buf[p++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
    buf[p] = '\0';
}

/* Both or neither of two flags; see flags.h. */
bool flags_check_pair(const struct flags_prog *prog, const char *a, const char *va, const char *b,
                      const char *vb)
{
    if ((va != NULL) == (vb != NULL)) return true;
    if (va == NULL) {
        const char *t = a;
        a = b;
        b = t;
    }
    fprintf(stderr, "%s: --%s is set but --%s is not (set both or neither)\n", prog->name, a, b);
    return false;
}

/* Parses an unsigned integer with an optional binary size suffix. */
bool flags_parse_u64(const char *s, bool size_suffix, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)*s)) return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0) return false;
    unsigned shift = 0;
    if (size_suffix && *end != '\0') {
        switch (tolower((unsigned char)*end)) {
        case 'k':
            shift = 10;
            break;
        case 'm':
            shift = 20;
            break;
        case 'g':
            shift = 30;
            break;
        default:
            return false;
        }
        end++;
        if (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0) end += strlen(end);
    }
    if (*end != '\0') return false;
    if (shift != 0 && v > (UINT64_MAX >> shift)) return false;
    *out = (uint64_t)v << shift;
    return true;
}

/* Stores v into an unsigned or non-negative integer field of 4 or 8 bytes. */
static void store_int(char *p, size_t size, uint64_t v)
{
    if (size == sizeof(uint64_t)) {
        memcpy(p, &v, sizeof v);
    } else {
        /* The table's max keeps v within the field's range. */
        uint32_t v32 = (uint32_t)v;
        memcpy(p, &v32, sizeof v32);
    }
}

/* Applies one textual value to cfg; prints the reason and returns false if bad. */
static bool apply(const struct flags_prog *prog, void *cfg, const struct flags_spec *f,
                  const char *val, const char *source)
{
    char *p = (char *)cfg + f->offset;
    uint64_t v;
    int e;
    switch (f->kind) {
    case FLAGS_STR:
        if (f->parse != NULL && f->parse(val) < 0) {
            fprintf(stderr, "%s: --%s: \"%s\" is not %s (from %s)\n", prog->name, f->name, val,
                    f->what, source);
            return false;
        }
        if (*val == '\0' && !f->empty_ok) {
            fprintf(stderr, "%s: --%s: empty value (from %s)\n", prog->name, f->name, source);
            return false;
        }
        free(*(char **)p);
        *(char **)p = strdup(val);
        if (*(char **)p == NULL) {
            fprintf(stderr, "%s: out of memory\n", prog->name);
            return false;
        }
        return true;
    case FLAGS_INT:
    case FLAGS_SIZE:
        if (!flags_parse_u64(val, f->kind == FLAGS_SIZE, &v)) {
            fprintf(stderr, "%s: --%s: \"%s\" is not %s (from %s)\n", prog->name, f->name, val,
                    f->kind == FLAGS_SIZE ? "a size (e.g. 65536, 64KiB, 64MiB)"
                                          : "a non-negative integer",
                    source);
            return false;
        }
        if (v < f->min || v > f->max) {
            fprintf(stderr, "%s: --%s: %s is out of range %llu..%llu (from %s)\n", prog->name,
                    f->name, val, (unsigned long long)f->min, (unsigned long long)f->max, source);
            return false;
        }
        store_int(p, f->size, v);
        return true;
    case FLAGS_ENUM:
        e = f->parse(val);
        if (e < 0) {
            fprintf(stderr, "%s: --%s: \"%s\" is not %s (from %s)\n", prog->name, f->name, val,
                    f->what, source);
            return false;
        }
        *(int *)p = e;
        return true;
    }
    return false;
}

/* Prints every flag with its environment name and default. */
static void print_help(const struct flags_prog *prog)
{
    printf("usage: %s [flags]\n\n%s", prog->name, prog->about);
    for (size_t i = 0; i < prog->n_flags; i++) {
        const struct flags_spec *f = &prog->flags[i];
        char env[64];
        env_name(f, env, sizeof env);
        printf("  --%-20s %s\n  %22s env %s, default %s\n", f->name, f->help, "", env,
               f->def != NULL ? f->def : "(see above)");
    }
    printf("  --%-20s print this help and exit\n  --%-20s print the version and exit\n", "help",
           "version");
}

/* Finds a flag by name (without dashes); NULL if unknown. */
static const struct flags_spec *find_flag(const struct flags_prog *prog, const char *name,
                                          size_t len)
{
    for (size_t i = 0; i < prog->n_flags; i++)
        if (strlen(prog->flags[i].name) == len && strncmp(prog->flags[i].name, name, len) == 0)
            return &prog->flags[i];
    return NULL;
}

bool flags_apply(const struct flags_prog *prog, const char *name, void *cfg, const char *val,
                 const char *source)
{
    const struct flags_spec *f = find_flag(prog, name, strlen(name));
    if (f == NULL) {
        fprintf(stderr, "%s: unknown flag \"--%s\"\n", prog->name, name);
        return false;
    }
    return apply(prog, cfg, f, val, source);
}

/* Parses defaults, environment and argv into cfg (see flags.h). */
enum flags_result flags_parse(const struct flags_prog *prog, int argc, char **argv, void *cfg)
{
    for (size_t i = 0; i < prog->n_flags; i++) {
        const struct flags_spec *f = &prog->flags[i];
        if (f->def != NULL && !apply(prog, cfg, f, f->def, "default")) return FLAGS_EXIT_BAD;
    }

    for (size_t i = 0; i < prog->n_flags; i++) {
        char env[64];
        env_name(&prog->flags[i], env, sizeof env);
        const char *v = getenv(env);
        if (v != NULL && !apply(prog, cfg, &prog->flags[i], v, env)) return FLAGS_EXIT_BAD;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(prog);
            return FLAGS_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", prog->name, prog->version);
            return FLAGS_EXIT_OK;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", prog->name, a);
            return FLAGS_EXIT_BAD;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const struct flags_spec *f = find_flag(prog, name, len);
        if (f == NULL) {
            fprintf(stderr, "%s: unknown flag \"--%.*s\" (see --help)\n", prog->name, (int)len,
                    name);
            return FLAGS_EXIT_BAD;
        }
        const char *val = eq != NULL ? eq + 1 : NULL;
        if (val == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --%s needs a value\n", prog->name, f->name);
                return FLAGS_EXIT_BAD;
            }
            val = argv[++i];
        }
        if (!apply(prog, cfg, f, val, "command line")) return FLAGS_EXIT_BAD;
    }
    return FLAGS_OK;
}
