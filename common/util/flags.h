/*
 * flags.h — the table-driven command line and environment of the vecshard
 * server processes (vecshard-node, vecshard-router).
 *
 * A process describes its flags as one table of struct flags_spec: name,
 * kind, default (as the text a user would type), bounds, destination field
 * and help. flags_parse runs the same converter over the default, then the
 * environment variable, then the command line, so a bad value is reported
 * the same way wherever it came from
 *
 *   vecshard-node: --threads: "x" is not a non-negative integer (from VECSHARD_THREADS)
 *
 * and the caller exits 2. Every flag `--name` has an environment twin
 * `VECSHARD_NAME` (upper case, '-' -> '_'); the flag wins over the
 * environment, which wins over the default. Sizes accept a binary suffix
 * (64MiB, 64M, 64m, 1g, 512k). Checks that span flags (host:port, endpoint
 * lists, key prefixes) stay with each process, after flags_parse.
 *
 * libc only; messages go to stderr, --help and --version to stdout.
 */
#ifndef VS_UTIL_FLAGS_H
#define VS_UTIL_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a flag's text becomes the value of its field. */
enum flags_kind {
    FLAGS_STR,  /* char *, a strdup owned by the config (freed by the process) */
    FLAGS_INT,  /* unsigned decimal in min..max; int, long, uint32_t or uint64_t */
    FLAGS_SIZE, /* FLAGS_INT with an optional k/m/g suffix (KiB, MiB, GiB) */
    FLAGS_ENUM, /* int, the result of parse(); what names the accepted words */
};

/* One flag; a process has a static const table of them. */
struct flags_spec {
    const char *name; /* without the leading "--" */
    enum flags_kind kind;
    const char *def;   /* NULL: no default (computed after parsing, or optional) */
    uint64_t min, max; /* FLAGS_INT, FLAGS_SIZE */
    size_t offset;     /* of the field in the config struct */
    size_t size;       /* of that field (FLAGS_INT, FLAGS_SIZE: 4 or 8) */
    const char *help;
    /* FLAGS_ENUM: the value of a word, < 0 if not one. FLAGS_STR: optional
     * check, < 0 rejects. what completes "is not ..." for a rejected value. */
    int (*parse)(const char *s);
    const char *what;
    bool empty_ok; /* FLAGS_STR: "" is a value (otherwise "empty value") */
};

/* Offset and size of a config field, for a flags_spec initialiser. */
#define FLAGS_FIELD(type, field) offsetof(type, field), sizeof(((type *)0)->field)

/* A process: its name (prefix of every message), version, flags and --help text. */
struct flags_prog {
    const char *name;    /* "vecshard-node" */
    const char *version; /* printed by --version */
    const char *about;   /* paragraph(s) --help prints after the usage line */
    const struct flags_spec *flags;
    size_t n_flags;
};

/* What flags_parse decided. */
enum flags_result {
    FLAGS_OK = 0,
    FLAGS_EXIT_OK,  /* --help or --version was printed: exit 0 */
    FLAGS_EXIT_BAD, /* a message was printed to stderr: exit 2 */
};

/*
 * Applies the defaults, the VECSHARD_* variables and argv to cfg (the
 * struct the table describes, zeroed by the caller). Prints help, version or
 * the error itself. Strings stored in cfg belong to the caller whatever the
 * result.
 */
enum flags_result flags_parse(const struct flags_prog *prog, int argc, char **argv, void *cfg);

/*
 * Applies one textual value to the flag called name as if it came from
 * source (named in the error message); false, with the reason printed, if
 * the value is bad or the flag unknown. For defaults computed after parsing.
 */
bool flags_apply(const struct flags_prog *prog, const char *name, void *cfg, const char *val,
                 const char *source);

/* For flags that go together (--tls-cert and --tls-key): true when both
 * values are set or neither is; otherwise prints "<prog>: --a is set but
 * --b is not (set both or neither)" and returns false. */
bool flags_check_pair(const struct flags_prog *prog, const char *a, const char *va, const char *b,
                      const char *vb);

/* Parses an unsigned decimal integer, with an optional binary size suffix. */
bool flags_parse_u64(const char *s, bool size_suffix, uint64_t *out);

#endif
