/*
 * hnswlib_bench.cpp — vecshard-bench-hnswlib: the same benchmark as
 * vecshard-bench (same flags, same data handling, same measuring loop and
 * output, from tools/bench/), with hnswlib (Debian libhnswlib-dev, header
 * only) as the engine, so the two can be compared line by line.
 *
 * hnswlib is used the way its own Python bindings use it: max_elements is
 * exactly the base size; the first point is added alone, then T std::threads
 * take rows from one atomic counter and call addPoint; cosine is inner
 * product over normalised vectors (base normalised inside the timed build,
 * each query inside its timed search, as vecshard does for cosine); search
 * is single-threaded searchKnn with setEf(max(ef, k)).
 *
 * `bytes` is an accounting from hnswlib's own members (see hnswlib_bytes),
 * not an estimate from the parameters, so upper-layer links and the id map
 * are counted as they were actually allocated.
 */
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tools/bench/bench_args.h"
#include "tools/bench/bench_report.h"

namespace
{

/* The distance kernel hnswlib was compiled with (chosen at compile time). */
const char *hnswlib_kernel()
{
#if defined(USE_AVX512)
    return "avx512";
#elif defined(USE_AVX)
    return "avx";
#elif defined(USE_SSE)
    return "sse";
#else
    return "scalar";
#endif
}

/*
 * Bytes held by the index, from its members: level-0 block (links, vector,
 * label per element), per-element level, lock and upper-layer pointer,
 * the upper-layer link lists actually allocated, the fixed pool of update
 * locks, one visited list per build thread, and the label map (buckets plus
 * ~32 bytes per node of std::unordered_map).
 */
uint64_t hnswlib_bytes(const hnswlib::HierarchicalNSW<float> &h, int threads)
{
    uint64_t b = (uint64_t)h.max_elements_ * h.size_data_per_element_;
    b += (uint64_t)h.max_elements_ * sizeof(int);
    b += (uint64_t)h.max_elements_ * sizeof(std::mutex);
    b += (uint64_t)h.max_elements_ * sizeof(char *);
    for (size_t i = 0; i < h.cur_element_count; i++)
        b += (uint64_t)h.size_links_per_element_ * (uint64_t)h.element_levels_[i];
    b += (uint64_t)hnswlib::HierarchicalNSW<float>::max_update_element_locks * sizeof(std::mutex);
    b += (uint64_t)threads * h.max_elements_ * sizeof(hnswlib::vl_type);
    b += (uint64_t)h.label_lookup_.bucket_count() * 8 + (uint64_t)h.label_lookup_.size() * 32;
    return b;
}

/* Scales one vector to unit length in place (zero stays zero). */
void normalize(float *v, uint32_t dim)
{
    double s = 0;
    for (uint32_t j = 0; j < dim; j++)
        s += (double)v[j] * v[j];
    if (s == 0) return;
    float inv = (float)(1.0 / std::sqrt(s));
    for (uint32_t j = 0; j < dim; j++)
        v[j] *= inv;
}

/* Search state handed to the measuring loop. */
struct peer_ctx {
    hnswlib::HierarchicalNSW<float> *index;
    bool cosine;
    std::vector<float> qbuf; /* normalised query under cosine */
};

/* bench_search_fn over searchKnn. */
int peer_search(void *vctx, const float *query, uint32_t k, uint32_t ef, uint64_t *ids, uint32_t *n,
                char *err)
{
    peer_ctx *c = static_cast<peer_ctx *>(vctx);
    try {
        const float *q = query;
        if (c->cosine) {
            std::memcpy(c->qbuf.data(), query, c->qbuf.size() * sizeof(float));
            normalize(c->qbuf.data(), (uint32_t)c->qbuf.size());
            q = c->qbuf.data();
        }
        c->index->setEf(std::max(ef, k));
        auto top = c->index->searchKnn(q, k);
        uint32_t m = (uint32_t)top.size();
        for (uint32_t i = m; i > 0; i--) { /* the queue pops farthest first */
            ids[i - 1] = top.top().second;
            top.pop();
        }
        *n = m;
        return 0;
    } catch (const std::exception &e) {
        std::snprintf(err, DATASET_ERR_MAX, "searchKnn: %s", e.what());
        return 1;
    }
}

/* Builds the index over d->base with T threads, timing it; fills *b. */
int build_index(const bench_args &a, bench_data &d, hnswlib::SpaceInterface<float> &space,
                std::unique_ptr<hnswlib::HierarchicalNSW<float>> &out, bench_build *b,
                std::string &err)
{
    const size_t n = d.base.n;
    const uint32_t dim = d.base.dim;
    long long rss0 = bench_rss_bytes();
    double t0 = bench_now();
    try {
        if (a.metric == DATASET_METRIC_COSINE) dataset_normalize(&d.base);
        out.reset(new hnswlib::HierarchicalNSW<float>(&space, n, a.M, a.ef_construction));
        out->addPoint(d.base.data, 0);
        std::atomic<size_t> next(1);
        std::mutex err_lock;
        auto worker = [&]() {
            for (;;) {
                size_t i = next.fetch_add(1);
                if (i >= n) return;
                try {
                    out->addPoint(d.base.data + i * dim, i);
                } catch (const std::exception &e) {
                    std::lock_guard<std::mutex> g(err_lock);
                    if (err.empty()) err = std::string("addPoint: ") + e.what();
                    next = n;
                    return;
                }
            }
        };
        std::vector<std::thread> pool;
        for (int t = 1; t < a.threads; t++)
            pool.emplace_back(worker);
        worker();
        for (auto &t : pool)
            t.join();
    } catch (const std::exception &e) {
        err = std::string("build: ") + e.what();
    }
    double t1 = bench_now();
    long long rss1 = bench_rss_bytes();
    if (!err.empty()) return 1;

    b->seconds = t1 - t0;
    b->threads = a.threads;
    b->n = n;
    b->dim = dim;
    b->bytes = hnswlib_bytes(*out, a.threads);
    b->rss_bytes = rss0 >= 0 && rss1 >= 0 ? rss1 - rss0 : -1;
    b->engine = "hnswlib";
    b->kernel = hnswlib_kernel();
    return 0;
}

} // namespace

/* Entry point: prepare the data, build, sweep ef. */
int main(int argc, char **argv)
{
    bench_args a;
    bench_data d;
    int rc = bench_prepare(argc, argv, &a, &d);
    if (rc >= 0) return rc;
    if (strcmp(a.quant, "none") != 0 || a.vector_file || a.search_threads > 1) {
        /* --search-threads: peer_search sets the index's shared ef before each query */
        fprintf(stderr, "vecshard-bench-hnswlib: --quant, --vector-file and --search-threads "
                        "are vecshard-only\n");
        bench_data_free(&d);
        return 2;
    }

    rc = 1;
    {
        std::unique_ptr<hnswlib::SpaceInterface<float>> space;
        if (a.metric == DATASET_METRIC_L2)
            space.reset(new hnswlib::L2Space(d.base.dim));
        else
            space.reset(new hnswlib::InnerProductSpace(d.base.dim));
        std::unique_ptr<hnswlib::HierarchicalNSW<float>> index;
        bench_build b;
        std::string err;
        if (build_index(a, d, *space, index, &b, err) != 0) {
            std::fprintf(stderr, "vecshard-bench-hnswlib: build failed: %s\n", err.c_str());
        } else {
            bench_print_build(&a, &b);
            peer_ctx ctx{index.get(), a.metric == DATASET_METRIC_COSINE,
                         std::vector<float>(d.query.dim)};
            char serr[DATASET_ERR_MAX] = "";
            rc = 0;
            for (size_t i = 0; i < a.n_ef; i++) {
                bench_search s;
                if (bench_run_search(&a, &d, peer_search, &ctx, a.ef[i], &s, serr) != 0) {
                    std::fprintf(stderr, "vecshard-bench-hnswlib: ef %u: %s\n", a.ef[i], serr);
                    rc = 1;
                    break;
                }
                bench_print_search(&a, &s, i == 0);
            }
        }
    }
    bench_data_free(&d);
    return rc;
}
