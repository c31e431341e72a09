/*
 * test_codec.c — base64, int64 strings, prefix range_end, status names and
 * endpoint parsing: the pure parts of common/etcd, no server needed.
 */
#include "etcd_tests.h"

#include <stdlib.h>
#include <string.h>

/* Encodes src and checks the exact text, then decodes it back. */
static void roundtrip(const char *src, size_t len, const char *b64)
{
    char *enc = NULL, *dec = NULL;
    size_t enc_len = 0, dec_len = 0;

    CU_ASSERT_EQUAL_FATAL(etcd_base64_encode(src, len, &enc, &enc_len), ETCD_OK);
    CU_ASSERT_STRING_EQUAL(enc, b64);
    CU_ASSERT_EQUAL(enc_len, strlen(b64));
    CU_ASSERT_EQUAL_FATAL(etcd_base64_decode(enc, enc_len, &dec, &dec_len), ETCD_OK);
    CU_ASSERT_EQUAL(dec_len, len);
    CU_ASSERT(memcmp(dec, src, len) == 0);
    CU_ASSERT_EQUAL(dec[dec_len], '\0');
    free(enc);
    free(dec);
}

/* Known vectors (RFC 4648 §10) and every byte value. */
static void test_base64(void)
{
    unsigned char all[256];
    char *enc, *dec;
    size_t n;

    roundtrip("", 0, "");
    roundtrip("f", 1, "Zg==");
    roundtrip("fo", 2, "Zm8=");
    roundtrip("foo", 3, "Zm9v");
    roundtrip("foob", 4, "Zm9vYg==");
    roundtrip("fooba", 5, "Zm9vYmE=");
    roundtrip("foobar", 6, "Zm9vYmFy");
    roundtrip("/vs/members/", 12, "L3ZzL21lbWJlcnMv");
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    CU_ASSERT_EQUAL_FATAL(etcd_base64_encode(all, 256, &enc, &n), ETCD_OK);
    CU_ASSERT_EQUAL_FATAL(etcd_base64_decode(enc, n, &dec, &n), ETCD_OK);
    CU_ASSERT_EQUAL(n, 256);
    CU_ASSERT(memcmp(dec, all, 256) == 0);
    free(enc);
    free(dec);
}

/* Malformed base64 is rejected, never half-decoded. */
static void test_base64_bad(void)
{
    const char *bad[] = {"YQ=", "Y===", "YQ=a", "@@@@", "Zm9v\n", "=Zm9", "Zm=v"};
    char *dec = NULL;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(etcd_base64_decode(bad[i], strlen(bad[i]), &dec, NULL), ETCD_EINVAL);
    }
}

/* int64 strings as etcd sends them. */
static void test_int64(void)
{
    int64_t v = 0;

    CU_ASSERT_TRUE(etcd_parse_int64("5", &v));
    CU_ASSERT_EQUAL(v, 5);
    CU_ASSERT_TRUE(etcd_parse_int64("-12", &v));
    CU_ASSERT_EQUAL(v, -12);
    CU_ASSERT_TRUE(etcd_parse_int64("4111120144794697479", &v));
    CU_ASSERT_EQUAL(v, 4111120144794697479LL);
    CU_ASSERT_TRUE(etcd_parse_int64("9223372036854775807", &v));
    CU_ASSERT_EQUAL(v, INT64_MAX);
    CU_ASSERT_FALSE(etcd_parse_int64("9223372036854775808", &v));
    CU_ASSERT_FALSE(etcd_parse_int64("", &v));
    CU_ASSERT_FALSE(etcd_parse_int64("1x", &v));
    CU_ASSERT_FALSE(etcd_parse_int64(" 1", &v));
    CU_ASSERT_FALSE(etcd_parse_int64(NULL, &v));
}

/* range_end for prefixes, including 0xff carry and the whole keyspace. */
static void test_prefix_end(void)
{
    char *e;
    size_t n;

    CU_ASSERT_EQUAL_FATAL(etcd_prefix_end("/vs/members/", 12, &e, &n), ETCD_OK);
    CU_ASSERT_STRING_EQUAL(e, "/vs/members0");
    CU_ASSERT_EQUAL(n, 12);
    free(e);
    CU_ASSERT_EQUAL_FATAL(etcd_prefix_end("a\xff", 2, &e, &n), ETCD_OK);
    CU_ASSERT_STRING_EQUAL(e, "b");
    CU_ASSERT_EQUAL(n, 1);
    free(e);
    CU_ASSERT_EQUAL_FATAL(etcd_prefix_end("\xff\xff", 2, &e, &n), ETCD_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(e[0], '\0');
    free(e);
    CU_ASSERT_EQUAL_FATAL(etcd_prefix_end("", 0, &e, &n), ETCD_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(e[0], '\0');
    free(e);
}

/* Endpoint lists are validated; status names are stable. */
static void test_client_args(void)
{
    etcd_client *c = (etcd_client *)1;
    etcd_err err = {{0}};

    CU_ASSERT_EQUAL(etcd_client_new("", 1000, &c, &err), ETCD_EINVAL);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_EQUAL(etcd_client_new(" , ", 1000, &c, NULL), ETCD_EINVAL);
    CU_ASSERT_EQUAL(etcd_client_new("127.0.0.1:2379", 1000, &c, &err), ETCD_EINVAL);
    CU_ASSERT(strstr(err.msg, "127.0.0.1:2379") != NULL);
    CU_ASSERT_EQUAL(etcd_client_new(" http://a:1/ ,http://b:2", 1000, &c, &err), ETCD_OK);
    etcd_client_free(c);
    CU_ASSERT_STRING_EQUAL(etcd_status_str(ETCD_OK), "ETCD_OK");
    CU_ASSERT_STRING_EQUAL(etcd_status_str(ETCD_ELEASE), "ETCD_ELEASE");
    CU_ASSERT_EQUAL(ETCD_OK, 0);
}

/* Registers the codec suite. */
void etcd_tests_codec(void)
{
    CU_pSuite s = CU_add_suite("etcd_codec", NULL, NULL);

    CU_add_test(s, "base64 vectors", test_base64);
    CU_add_test(s, "base64 rejects malformed input", test_base64_bad);
    CU_add_test(s, "int64 strings", test_int64);
    CU_add_test(s, "prefix range_end", test_prefix_end);
    CU_add_test(s, "client arguments", test_client_args);
}
