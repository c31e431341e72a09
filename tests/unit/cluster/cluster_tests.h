/*
 * cluster_tests.h — the suites of build/test_cluster (common/cluster): each
 * test_*.c registers its own with one function, main.c runs them all.
 */
#ifndef VS_TEST_CLUSTER_TESTS_H
#define VS_TEST_CLUSTER_TESTS_H

/* test_name.c: the collection name rule. */
void cluster_tests_name(void);
/* test_doc.c: keys, metric names, parse/format of the three documents. */
void cluster_tests_doc(void);
/* test_move_doc.c: the drain mark and move documents, their keys. */
void cluster_tests_move_doc(void);
/* test_cas.c: cluster_shard_update against a real etcd. */
void cluster_tests_cas(void);

#endif
