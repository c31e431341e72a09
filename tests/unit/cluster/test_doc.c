/*
 * test_doc.c — the etcd documents' codec: key builders and the key
 * classifier, metric names, and for each document a byte-exact format (the
 * JSON the processes and the Python harness have always written), a round
 * trip, defaults, and a refusal naming the field for every malformed one.
 */
#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/cluster.h"
#include "tests/unit/cluster/cluster_tests.h"

/* Checks a malloc'ed string against want and frees it. */
static void expect_str(char *got, const char *want)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_STRING_EQUAL(got, want);
    free(got);
}

/* Every builder and the classifier on good and bad keys. */
static void test_keys(void)
{
    expect_str(cluster_key_node("/vs", "n1"), "/vs/nodes/n1");
    expect_str(cluster_key_collection("/vs", "docs"), "/vs/collections/docs");
    expect_str(cluster_key_shard("/vs", "docs", 7), "/vs/shards/docs/7");
    expect_str(cluster_key_shards_of("/vs", "docs"), "/vs/shards/docs/");
    expect_str(cluster_key_dir("/vs", "nodes"), "/vs/nodes/");
    expect_str(cluster_key_controller("/vs"), "/vs/controller");
    struct cluster_key k;
    CU_ASSERT_EQUAL(cluster_key_parse("nodes/n-1", &k), CLUSTER_KEY_NODE);
    CU_ASSERT_STRING_EQUAL(k.node_id, "n-1");
    CU_ASSERT_EQUAL(cluster_key_parse("collections/docs_2", &k), CLUSTER_KEY_COLLECTION);
    CU_ASSERT_STRING_EQUAL(k.name, "docs_2");
    CU_ASSERT_EQUAL(cluster_key_parse("shards/docs/4294967295", &k), CLUSTER_KEY_SHARD);
    CU_ASSERT_STRING_EQUAL(k.name, "docs");
    CU_ASSERT_EQUAL(k.shard, 4294967295u);
    const char *other[] = {"nodes/",          "nodes/a/b",        "collections/a.b",
                           "collections/",    "shards/docs/",     "shards/docs/4294967296",
                           "shards/docs/-1",  "shards/docs/+1",   "shards/docs/ 1",
                           "shards/docs/1/x", "shards/a.b/1",     "shards/docs",
                           "controller",      "collectionsx/docs"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        CU_ASSERT_EQUAL(cluster_key_parse(other[i], &k), CLUSTER_KEY_OTHER);
        if (k.kind != CLUSTER_KEY_OTHER) fprintf(stderr, "accepted %s\n", other[i]);
    }
    char name[CLUSTER_NAME_MAX + 1];
    uint32_t sh = 0;
    CU_ASSERT_EQUAL(cluster_key_parse_shard("c/12", name, &sh), 0);
    CU_ASSERT_STRING_EQUAL(name, "c");
    CU_ASSERT_EQUAL(sh, 12);
    CU_ASSERT_EQUAL(cluster_key_parse_shard("c/12x", name, &sh), -1);
}

/* Names both ways, any case, with the proto's METRIC_ prefix. */
static void test_metric(void)
{
    CU_ASSERT_STRING_EQUAL(cluster_metric_name(CLUSTER_METRIC_L2), "l2");
    CU_ASSERT_STRING_EQUAL(cluster_metric_name(CLUSTER_METRIC_IP), "ip");
    CU_ASSERT_STRING_EQUAL(cluster_metric_name(CLUSTER_METRIC_COSINE), "cosine");
    enum cluster_metric m = CLUSTER_METRIC_L2;
    CU_ASSERT_EQUAL(cluster_metric_parse("COSINE", &m), 0);
    CU_ASSERT_EQUAL(m, CLUSTER_METRIC_COSINE);
    CU_ASSERT_EQUAL(cluster_metric_parse("METRIC_IP", &m), 0);
    CU_ASSERT_EQUAL(m, CLUSTER_METRIC_IP);
    CU_ASSERT_EQUAL(cluster_metric_parse("l1", &m), -1);
    CU_ASSERT_EQUAL(cluster_metric_parse("", &m), -1);
}

/* Parses json expecting a refusal whose message is want. */
static void expect_coll_bad(const char *json, const char *want)
{
    struct cluster_collection c;
    char err[200] = "";
    CU_ASSERT_EQUAL(cluster_collection_parse(json, strlen(json), &c, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, want);
    if (strcmp(err, want) != 0) fprintf(stderr, "%s -> %s\n", json, err);
}

/* The router's byte format, defaults, the "M" spelling, strings as numbers. */
static void test_collection(void)
{
    const char *doc = "{\"name\":\"docs\",\"dim\":128,\"metric\":\"cosine\",\"m\":24,"
                      "\"ef_construction\":300,\"ef_search\":80,\"shards\":6,"
                      "\"replication_factor\":2,\"created_at\":1795256510502}";
    struct cluster_collection c;
    char err[200];
    CU_ASSERT_EQUAL_FATAL(cluster_collection_parse(doc, strlen(doc), &c, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(c.name, "docs");
    CU_ASSERT_EQUAL(c.dim, 128);
    CU_ASSERT_EQUAL(c.metric, CLUSTER_METRIC_COSINE);
    CU_ASSERT_EQUAL(c.m, 24);
    CU_ASSERT_EQUAL(c.ef_construction, 300);
    CU_ASSERT_EQUAL(c.ef_search, 80);
    CU_ASSERT_EQUAL(c.shards, 6);
    CU_ASSERT_EQUAL(c.replication_factor, 2);
    CU_ASSERT_EQUAL(c.created_at, 1795256510502LL);
    expect_str(cluster_collection_format(&c), doc);

    const char *min = "{\"dim\":\"3\",\"M\":8,\"metric\":2,\"ef_search\":0}";
    CU_ASSERT_EQUAL_FATAL(cluster_collection_parse(min, strlen(min), &c, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(c.name, "");
    CU_ASSERT_EQUAL(c.dim, 3);
    CU_ASSERT_EQUAL(c.m, 8);
    CU_ASSERT_EQUAL(c.metric, CLUSTER_METRIC_COSINE);
    CU_ASSERT_EQUAL(c.ef_construction, 200);
    CU_ASSERT_EQUAL(c.ef_search, 64);
    CU_ASSERT_EQUAL(c.shards, 1);
    CU_ASSERT_EQUAL(c.replication_factor, 1);
    CU_ASSERT_EQUAL(c.created_at, 0);

    expect_coll_bad("[1]", "collection config is not a JSON object");
    expect_coll_bad("{\"dim\":", "collection config is not a JSON object");
    expect_coll_bad("{\"dim\":4,\"name\":\"a/b\"}",
                    "collection field \"name\" is not [A-Za-z0-9_-]{1,64}");
    expect_coll_bad("{\"dim\":4,\"name\":5}",
                    "collection field \"name\" is not [A-Za-z0-9_-]{1,64}");
    expect_coll_bad("{}", "collection field \"dim\" must be an integer 1..65536");
    expect_coll_bad("{\"dim\":65537}", "collection field \"dim\" must be an integer 1..65536");
    expect_coll_bad("{\"dim\":1.5}", "collection field \"dim\" must be an integer 1..65536");
    const char *metric_msg =
        "collection field \"metric\" must be \"l2\", \"ip\" or \"cosine\" (or 0, 1, 2)";
    expect_coll_bad("{\"dim\":4,\"metric\":\"hamming\"}", metric_msg);
    expect_coll_bad("{\"dim\":4,\"metric\":3}", metric_msg);
    expect_coll_bad("{\"dim\":4,\"metric\":true}", metric_msg);
    expect_coll_bad("{\"dim\":4,\"m\":129}", "collection field \"m\" = 129 is out of range 2..128");
    expect_coll_bad("{\"dim\":4,\"M\":\"x\"}",
                    "collection field \"M\" is not a non-negative integer");
    expect_coll_bad("{\"dim\":4,\"ef_construction\":100001}",
                    "collection field \"ef_construction\" = 100001 is out of range 1..100000");
    expect_coll_bad("{\"dim\":4,\"ef_search\":-1}",
                    "collection field \"ef_search\" is not a non-negative integer");
    expect_coll_bad("{\"dim\":4,\"shards\":1048577}",
                    "collection field \"shards\" = 1048577 is out of range 1..1048576");
    expect_coll_bad("{\"dim\":4,\"replication_factor\":1025}",
                    "collection field \"replication_factor\" = 1025 is out of range 1..1024");
    expect_coll_bad("{\"dim\":4,\"created_at\":\"soon\"}",
                    "collection field \"created_at\" is not a non-negative integer");
}

/* Parses json expecting a refusal whose message is want. */
static void expect_shard_bad(const char *json, const char *want)
{
    struct cluster_shard s;
    char err[200] = "";
    CU_ASSERT_EQUAL(cluster_shard_parse(json, strlen(json), &s, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT_FALSE(s.present);
    CU_ASSERT_PTR_NULL(s.primary);
}

/* The router's create-time byte format, a round trip, the id-list helpers. */
static void test_shard(void)
{
    const char *doc = "{\"epoch\":5,\"primary\":\"n1\",\"replicas\":[\"n1\",\"n2\"],"
                      "\"in_sync\":[\"n1\",\"n2\"],\"recovering\":[]}";
    struct cluster_shard s, copy;
    char err[200];
    CU_ASSERT_EQUAL_FATAL(cluster_shard_parse(doc, strlen(doc), &s, err, sizeof err), 0);
    CU_ASSERT_TRUE(s.present);
    CU_ASSERT_EQUAL(s.epoch, 5);
    CU_ASSERT_STRING_EQUAL(s.primary, "n1");
    CU_ASSERT_EQUAL(s.replicas.n, 2);
    CU_ASSERT_STRING_EQUAL(s.replicas.v[1], "n2");
    CU_ASSERT_EQUAL(s.in_sync.n, 2);
    CU_ASSERT_EQUAL(s.recovering.n, 0);
    expect_str(cluster_shard_format(&s), doc);
    CU_ASSERT_EQUAL_FATAL(cluster_shard_copy(&copy, &s), 0);
    cluster_shard_clear(&s);
    CU_ASSERT_TRUE(cluster_ids_remove(&copy.in_sync, "n2"));
    CU_ASSERT_FALSE(cluster_ids_remove(&copy.in_sync, "n2"));
    CU_ASSERT_EQUAL(cluster_ids_add(&copy.recovering, "n2"), 0);
    CU_ASSERT_EQUAL(cluster_ids_add(&copy.recovering, "n2"), 0);
    CU_ASSERT_TRUE(cluster_ids_has(&copy.recovering, "n2"));
    CU_ASSERT_FALSE(cluster_ids_has(&copy.in_sync, "n2"));
    expect_str(cluster_shard_format(&copy),
               "{\"epoch\":5,\"primary\":\"n1\",\"replicas\":[\"n1\",\"n2\"],"
               "\"in_sync\":[\"n1\"],\"recovering\":[\"n2\"]}");
    /* recovering is recomputed as replicas - in_sync, in replica order */
    CU_ASSERT_EQUAL(cluster_ids_add(&copy.replicas, "n3"), 0);
    CU_ASSERT_EQUAL(cluster_ids_add(&copy.recovering, "stale"), 0);
    CU_ASSERT_EQUAL(cluster_shard_set_recovering(&copy), 0);
    expect_str(cluster_shard_format(&copy),
               "{\"epoch\":5,\"primary\":\"n1\",\"replicas\":[\"n1\",\"n2\",\"n3\"],"
               "\"in_sync\":[\"n1\"],\"recovering\":[\"n2\",\"n3\"]}");
    CU_ASSERT_EQUAL(cluster_ids_add(&copy.in_sync, "n2"), 0);
    CU_ASSERT_EQUAL(cluster_ids_add(&copy.in_sync, "n3"), 0);
    CU_ASSERT_EQUAL(cluster_shard_set_recovering(&copy), 0);
    CU_ASSERT_EQUAL(copy.recovering.n, 0);
    cluster_shard_clear(&copy);

    const char *empty = "{\"primary\":null,\"epoch\":\"9\"}";
    CU_ASSERT_EQUAL_FATAL(cluster_shard_parse(empty, strlen(empty), &s, err, sizeof err), 0);
    CU_ASSERT_EQUAL(s.epoch, 9);
    CU_ASSERT_STRING_EQUAL(s.primary, "");
    CU_ASSERT_EQUAL(s.replicas.n + s.in_sync.n + s.recovering.n, 0);
    cluster_shard_clear(&s);

    expect_shard_bad("\"x\"", "shard entry is not a JSON object");
    expect_shard_bad("{\"epoch\":-1}", "shard field \"epoch\" is not a non-negative integer");
    expect_shard_bad("{\"primary\":1}", "shard field \"primary\" is not a string");
    expect_shard_bad("{\"replicas\":\"n1\"}",
                     "shard field \"replicas\" is not an array of strings");
    expect_shard_bad("{\"in_sync\":[\"n1\",2]}",
                     "shard field \"in_sync\" is not an array of strings");
    expect_shard_bad("{\"recovering\":{}}",
                     "shard field \"recovering\" is not an array of strings");
}

/* The node's registration bytes, a round trip, refusals. */
static void test_node(void)
{
    const char *doc = "{\"addr\":\"10.0.0.7:7400\",\"started_at\":1795256510502,"
                      "\"version\":\"0.1.0\",\"capacity\":0,\"node_id\":\"n1\"}";
    struct cluster_node n;
    char err[200];
    CU_ASSERT_EQUAL_FATAL(cluster_node_parse(doc, strlen(doc), &n, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(n.addr, "10.0.0.7:7400");
    CU_ASSERT_STRING_EQUAL(n.version, "0.1.0");
    CU_ASSERT_STRING_EQUAL(n.node_id, "n1");
    CU_ASSERT_EQUAL(n.started_at, 1795256510502LL);
    CU_ASSERT_EQUAL(n.capacity, 0);
    expect_str(cluster_node_format(&n), doc);
    cluster_node_clear(&n);
    const char *bare = "{\"addr\":\"h:1\"}";
    CU_ASSERT_EQUAL_FATAL(cluster_node_parse(bare, strlen(bare), &n, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(n.version, "");
    CU_ASSERT_STRING_EQUAL(n.node_id, "");
    cluster_node_clear(&n);
    struct {
        const char *json, *want;
    } bad[] = {
        {"[]", "node registration is not a JSON object"},
        {"{}", "node field \"addr\" must be a non-empty string"},
        {"{\"addr\":\"\"}", "node field \"addr\" must be a non-empty string"},
        {"{\"addr\":\"h:1\",\"version\":1}", "node field \"version\" is not a string"},
        {"{\"addr\":\"h:1\",\"node_id\":[]}", "node field \"node_id\" is not a string"},
        {"{\"addr\":\"h:1\",\"started_at\":-5}",
         "node field \"started_at\" is not a non-negative integer"},
        {"{\"addr\":\"h:1\",\"capacity\":\"lots\"}",
         "node field \"capacity\" is not a non-negative integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CU_ASSERT_EQUAL(cluster_node_parse(bad[i].json, strlen(bad[i].json), &n, err, sizeof err),
                        -1);
        CU_ASSERT_STRING_EQUAL(err, bad[i].want);
        CU_ASSERT_PTR_NULL(n.addr);
    }
}

void cluster_tests_doc(void)
{
    CU_pSuite s = CU_add_suite("doc", NULL, NULL);
    CU_add_test(s, "key builders and the key classifier", test_keys);
    CU_add_test(s, "metric names", test_metric);
    CU_add_test(s, "collection document: bytes, defaults, every bad field", test_collection);
    CU_add_test(s, "shard entry: bytes, round trip, id lists, every bad field", test_shard);
    CU_add_test(s, "node document: bytes, round trip, every bad field", test_node);
}
