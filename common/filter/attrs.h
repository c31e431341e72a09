/*
 * attrs.h — typed point attributes (docs/filtering.md): the limits, the
 * check of a Point's attribute map, and the canonical binary form a replica
 * stores, logs in snapshots and tests filters against.
 *
 * The blob (little-endian), entries sorted by name (bytes, then length):
 *
 *   u8 count
 *   count x { u8 name_len, name bytes, u8 type, value }
 *     ATTR_INT, ATTR_DOUBLE  8 bytes (int64 / IEEE double)
 *     ATTR_BOOL              1 byte, 0 or 1
 *     ATTR_STRING            u16 len, bytes
 *     ATTR_TAGS              u8 n, n x { u16 len, bytes }
 *
 * Two equal attribute maps have the same blob whatever their wire order,
 * so replica digests compare. attrs_blob_check validates a blob read from
 * disk before anything walks it; attrs_iter walks a checked blob.
 *
 * Pure functions over caller memory: no locks, no global state.
 */
#ifndef VS_FILTER_ATTRS_H
#define VS_FILTER_ATTRS_H

#include "proto/vecshard/v1/common.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTR_MAX_COUNT  64   /* attributes per point */
#define ATTR_NAME_MAX   64   /* bytes of a name, [A-Za-z0-9_.-] */
#define ATTR_STRING_MAX 1024 /* bytes of a string value or of one tag */
#define ATTR_TAGS_MAX   64   /* tags in one list */
#define ATTR_BLOB_MAX   (64u << 10) /* bytes of a point's encoded attributes */
#define ATTR_ERR_MAX    256

enum attr_type {
    ATTR_INT = 1,
    ATTR_DOUBLE = 2,
    ATTR_STRING = 3,
    ATTR_BOOL = 4,
    ATTR_TAGS = 5,
};

/* One decoded attribute; pointers lead into the blob. */
struct attr_view {
    const char *name;
    uint32_t name_len;
    enum attr_type type;
    int64_t i;           /* ATTR_INT */
    double d;            /* ATTR_DOUBLE */
    bool b;              /* ATTR_BOOL */
    const char *s;       /* ATTR_STRING: the bytes; ATTR_TAGS: the first tag's record */
    uint32_t len;        /* ATTR_STRING: bytes; ATTR_TAGS: number of tags */
};

/* Walks the tags of an ATTR_TAGS view: *it starts at v->s. */
static inline void attr_tag_next(const char **it, const char **s, uint32_t *len)
{
    const uint8_t *p = (const uint8_t *)*it;
    *len = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    *s = (const char *)p + 2;
    *it = (const char *)p + 2 + *len;
}

/* True if name (len bytes) is a valid attribute name. */
bool attrs_name_ok(const char *name, size_t len);

/*
 * Checks a point's attribute map: names valid and distinct, at most
 * ATTR_MAX_COUNT entries, every value set and within the limits (finite
 * doubles, string and tag sizes). On failure writes a message naming
 * `what` and the entry, e.g. "points[3].attributes['price'] is NaN", and
 * returns false.
 */
bool attrs_check(Vecshard__V1__Point__AttributesEntry *const *e, size_t n, const char *what,
                 char *err, size_t errlen);

/* Bytes attrs_encode writes for a checked map (1 for an empty one). */
size_t attrs_encoded_size(Vecshard__V1__Point__AttributesEntry *const *e, size_t n);
/*
 * Writes the canonical blob of a checked map into out (attrs_encoded_size
 * bytes) and returns its length.
 */
size_t attrs_encode(Vecshard__V1__Point__AttributesEntry *const *e, size_t n, uint8_t *out);

/* True if blob[0..len) is a well-formed blob within the limits (names sorted and distinct). */
bool attrs_blob_check(const uint8_t *blob, size_t len);

/* Cursor over a checked blob. */
struct attrs_iter {
    const uint8_t *p, *end;
    uint32_t left;
};
void attrs_iter_init(struct attrs_iter *it, const uint8_t *blob, size_t len);
/* The next attribute into *v; false at the end. */
bool attrs_iter_next(struct attrs_iter *it, struct attr_view *v);
/* The attribute named name (len bytes) into *v; false if the blob has none. */
bool attrs_find(const uint8_t *blob, size_t len, const char *name, size_t name_len,
                struct attr_view *v);

/*
 * protobuf-c generates one entry type per map field; Point's and
 * ScoredPoint's attribute entries have the same layout (attrs.c checks it),
 * so code that reads either takes this type: pass a ScoredPoint's
 * `attributes` through ATTRS_ENTRIES().
 */
typedef Vecshard__V1__Point__AttributesEntry attrs_entry;
#define ATTRS_ENTRIES(m) ((attrs_entry *const *)(const void *)(m)->attributes)

/*
 * Decodes a checked blob into a map for a reply whose entries have the
 * descriptor entry_desc (vecshard__v1__point__attributes_entry__descriptor
 * or vecshard__v1__scored_point__attributes_entry__descriptor). Every
 * message and string comes from alloc(ctx, count, size) (zeroed memory that
 * lives as long as the reply; the caller frees it wholesale). *out (cast to
 * the field's type) and *nout get the entries. False when alloc fails.
 */
typedef void *(*attrs_alloc_fn)(void *ctx, size_t count, size_t size);
bool attrs_to_pb(const uint8_t *blob, size_t len, const ProtobufCMessageDescriptor *entry_desc,
                 attrs_alloc_fn alloc, void *ctx, attrs_entry ***out, size_t *nout);

#endif
