# vecshard — one GNU Makefile for every library, binary, test and benchmark.
#
# All outputs go under build/ (BUILD=... to move them; `make asan` uses
# build/asan). Sources are found by wildcard, one folder per module, so a new
# file in common/hnsw/ or tests/unit/hnsw/ needs no edit here.
#
#   make            libraries and binaries
#   make deps       install the missing Debian packages (scripts/deps.sh)
#   make test       deps + build + every test
#   make asan       the unit tests under AddressSanitizer + UBSan
#   make fuzz       every libFuzzer target (tests/fuzz) for FUZZ_TIME s (ASan + UBSan)
#   make fuzz-smoke the committed fuzz corpus + a few thousand runs per target (in make test)
#   make integration  real etcd + vecshard-node processes (tests/integration)
#   make k8s-check  deploy/k8s: render, schema validation, the overlays run locally
#   make chaos      10 random kill -9 rounds on a replicated cluster (tests/chaos), 4
#                   rebalance rounds (kill -9 during moves) + the long variants of
#                   tests/integration/test_repl_*.py and test_rebalance_*.py
#   make bench-repl replication: write throughput R = 2 vs R = 1, ack latency, failover
#                   time, transfer rate and time to restore R
#   make bench-security  search QPS and p50 through the router, TLS + API keys vs plaintext
#   make bench-rebalance  1M x 128 from 2 to 4 nodes: move time, MB/s, search p99 during
#   make clients-python  the Python client's tests against a real cluster
#   make clients-node the Node.js client's type check and tests (clients/node)
#   make bench      engine benchmark on MNIST and a synthetic set
#   make bench-node one node over gRPC vs the engine in-process (also in bench)
#   make bench-peer the same measurement against hnswlib, side by side
#   make bench-cluster  3-node cluster vs 1 node vs the engine on MNIST (also in bench)
#   make bench-restart  a node's restart time after a clean stop and after kill -9
#   make bench-filter filtered search per selectivity vs post-filtering and brute force
#   make demo       3-node local cluster on MNIST: load, search, recall/QPS/latency
#   make demo-engine  the engine alone on MNIST
#   make image-check  the container image's runtime stage in a debootstrapped Debian 12
#                   root: ldd, --version, etcd + node + router + CLI smoke (needs root)

BUILD    ?= build
CC       ?= cc
CXX      ?= c++
WERROR   ?= -Werror
OPT      ?= -O3
SAN      ?=
PYTHON   ?= /usr/bin/python3

PKGS     := grpc libprotobuf-c libcurl libcjson
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# libmicrohttpd only for common/http and the processes that serve --http
# (not the client libraries).
MHD_CFLAGS = $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
MHD_LIBS   = $(shell pkg-config --libs libmicrohttpd 2>/dev/null)

CFLAGS   := -std=gnu11 -g $(OPT) -fno-strict-aliasing -pthread \
            -Wall -Wextra $(WERROR) -Werror=implicit-function-declaration \
            -Wno-missing-field-initializers $(SAN) -I. -I$(BUILD)/gen
LDFLAGS  := -pthread $(SAN)
LDLIBS   := -lm

# ---------------------------------------------------------------- libraries
UTIL_SRC := $(wildcard common/util/*.c)
HNSW_SRC := $(wildcard common/hnsw/*.c)
RPC_SRC  := $(wildcard common/rpc/*.c)
ETCD_SRC := $(wildcard common/etcd/*.c)
CLUSTER_SRC := $(wildcard common/cluster/*.c)
METRICS_SRC := $(wildcard common/metrics/*.c)
HTTP_SRC := $(wildcard common/http/*.c)
FILTER_SRC := $(wildcard common/filter/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_UTIL := $(BUILD)/libvs_util.a
LIB_HNSW := $(BUILD)/libvs_hnsw.a
LIB_RPC  := $(BUILD)/libvs_rpc.a
LIB_ETCD := $(BUILD)/libvs_etcd.a
LIB_CLUSTER := $(BUILD)/libvs_cluster.a
LIB_METRICS := $(BUILD)/libvs_metrics.a
LIB_HTTP := $(BUILD)/libvs_http.a
LIB_FILTER := $(BUILD)/libvs_filter.a

$(LIB_UTIL): $(call obj,$(UTIL_SRC))
$(LIB_HNSW): $(call obj,$(HNSW_SRC))
$(LIB_RPC):  $(call obj,$(RPC_SRC))
$(LIB_ETCD): $(call obj,$(ETCD_SRC))
$(LIB_CLUSTER): $(call obj,$(CLUSTER_SRC))
$(LIB_METRICS): $(call obj,$(METRICS_SRC))
$(LIB_HTTP): $(call obj,$(HTTP_SRC))
$(LIB_FILTER): $(call obj,$(FILTER_SRC))

# Objects that use gRPC, protobuf-c, libcurl or cJSON get their include flags.
$(call obj,$(RPC_SRC) $(ETCD_SRC) $(CLUSTER_SRC) $(FILTER_SRC)): CFLAGS += $(PKG_CFLAGS)
$(call obj,$(HTTP_SRC)): CFLAGS += $(MHD_CFLAGS)

$(BUILD)/%.a:
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------- protobuf
# proto/<pkg>/v1/*.proto -> C (protoc-c) under $(BUILD)/gen/proto, archived in
# $(LIB_PROTO); Python messages + grpc stubs under $(BUILD)/gen/python (for
# tests and clients: PYTHONPATH=$(BUILD)/gen/python). The import root is
# proto/, so C code includes "proto/vecshard/v1/vecshard.pb-c.h" (through
# -I$(BUILD)/gen) and the generated files include each other as
# "vecshard/v1/common.pb-c.h" (through -I$(BUILD)/gen/proto).
PROTO_SRC   := $(wildcard proto/*/v1/*.proto)
PROTO_C     := $(patsubst proto/%.proto,$(BUILD)/gen/proto/%.pb-c.c,$(PROTO_SRC))
PROTO_H     := $(PROTO_C:.c=.h)
PROTO_PY    := $(patsubst proto/%.proto,$(BUILD)/gen/python/%_pb2.py,$(PROTO_SRC))
LIB_PROTO   := $(BUILD)/libvs_proto.a
GRPC_PY_PLUGIN ?= /usr/bin/grpc_python_plugin

CFLAGS += -I$(BUILD)/gen/proto

$(BUILD)/gen/proto/%.pb-c.c $(BUILD)/gen/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen/proto
	protoc-c -Iproto --c_out=$(BUILD)/gen/proto $<

$(BUILD)/gen/python/%_pb2.py $(BUILD)/gen/python/%_pb2_grpc.py: proto/%.proto
	@mkdir -p $(BUILD)/gen/python
	protoc -Iproto --python_out=$(BUILD)/gen/python --grpc_python_out=$(BUILD)/gen/python \
	  --plugin=protoc-gen-grpc_python=$(GRPC_PY_PLUGIN) $<

$(LIB_PROTO): $(call obj,$(PROTO_C))
# Generated sources are not intermediate files: keep them for debugging.
.SECONDARY: $(PROTO_C) $(PROTO_H) $(PROTO_PY)

# Everything that may include a generated header waits for generation.
PROTO_USERS := $(PROTO_C) $(RPC_SRC) $(FILTER_SRC) $(wildcard node/*.c node/*/*.c router/*.c router/*/*.c tools/*/*.c \
               tests/unit/*/*.c tests/integration/*.c tests/fuzz/*.c)
$(call obj,$(PROTO_USERS)): | $(PROTO_H)
# test_rpc runs a Python grpcio client against a C server.
$(BUILD)/test_rpc: | $(PROTO_PY)

all: $(LIB_PROTO) $(LIB_RPC) $(LIB_METRICS) $(LIB_HTTP) $(LIB_FILTER) $(PROTO_PY)

# ---------------------------------------------------------------- node storage
# The shard replica's storage layer (WAL, snapshots, payload store, replica)
# as a library: node/storage/ (identity, trash, dir, WAL, snapshots, payload
# store, replica); the vecshard-node process files in node/ are not part of it.
NODE_LIB_SRC := $(wildcard node/storage/*.c)
LIB_NODE     := $(BUILD)/libvs_node.a
$(LIB_NODE): $(call obj,$(NODE_LIB_SRC))
$(call obj,$(NODE_LIB_SRC)): CFLAGS += $(PKG_CFLAGS)
all: $(LIB_NODE)

# ---------------------------------------------------------------- router library
# The VecShard service (router/ minus main.c): served by vecshard-router and
# by a node's --coordinator-listen port; one copy of routing and merging.
ROUTER_LIB_SRC := $(filter-out router/main.c,$(wildcard router/*.c router/controller/*.c))
LIB_ROUTER     := $(BUILD)/libvs_router.a
$(LIB_ROUTER): $(call obj,$(ROUTER_LIB_SRC))
$(call obj,$(ROUTER_LIB_SRC)): CFLAGS += $(PKG_CFLAGS)
all: $(LIB_ROUTER)

# ---------------------------------------------------------------- binaries
BENCH_SRC := $(wildcard tools/bench/*.c)
BIN_BENCH := $(BUILD)/vecshard-bench
$(BIN_BENCH): $(call obj,$(BENCH_SRC)) $(LIB_HNSW) $(LIB_UTIL)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

BINS := $(BIN_BENCH)

# The peer benchmark: hnswlib (header-only, Debian libhnswlib-dev) behind the
# same command line and JSON as vecshard-bench. Built with -march=native as
# hnswlib's users do; it shares the flags, data handling and measuring loop
# (tools/bench/dataset, bench_args, bench_report) with vecshard-bench, not the engine.
BIN_PEER := $(BUILD)/vecshard-bench-hnswlib
$(BIN_PEER): tools/peer/hnswlib_bench.cpp $(BUILD)/obj/tools/bench/dataset.o $(BUILD)/obj/tools/bench/bench_args.o \
            $(BUILD)/obj/tools/bench/bench_report.o $(LIB_UTIL) $(wildcard tools/bench/*.h)
	$(CXX) -std=c++17 -O3 -march=native -g -pthread -I. -Wall -Wno-unused-parameter -o $@ $(filter-out %.h,$^) -lm

# ---------------------------------------------------------------- vecshard-node
# The shard node process (node/main.c, node/node_*.c, node/replication/) over the replica
# storage library; docs/node.md describes its flags and contract.
NODE_BIN_SRC := node/main.c $(wildcard node/node_*.c) $(wildcard node/replication/*.c)
BIN_NODE     := $(BUILD)/vecshard-node
$(call obj,$(NODE_BIN_SRC)): CFLAGS += $(PKG_CFLAGS)
$(BIN_NODE): $(call obj,$(NODE_BIN_SRC)) $(LIB_ROUTER) $(LIB_NODE) $(LIB_HTTP) $(LIB_RPC) $(LIB_METRICS) \
             $(LIB_CLUSTER) $(LIB_ETCD) $(LIB_FILTER) $(LIB_PROTO) $(LIB_HNSW) $(LIB_UTIL)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(MHD_LIBS) $(LDLIBS)
BINS += $(BIN_NODE)
# ------------------------------------------------------------ end vecshard-node

# ---------------------------------------------------------------- libvecshard (C client)
# The C client library (clients/c/*.c, public header clients/c/vecshard.h;
# docs/clients.md ("C")) over common/rpc's client and the generated protobuf-c
# code. libvecshard.a holds those objects, so a program links it alone (plus
# gRPC and protobuf-c); libvecshard.so is linked from position-independent
# builds of the same sources under $(BUILD)/pic/ and exports only vecshard_*
# (clients/c/libvecshard.map).
VSC_SRC      := $(wildcard clients/c/*.c)
VSC_LIB_SRC  := $(VSC_SRC) common/rpc/client.c common/rpc/pb.c common/rpc/tls.c $(FILTER_SRC) $(PROTO_C)
LIB_VECSHARD := $(BUILD)/libvecshard.a
SO_VECSHARD  := $(BUILD)/libvecshard.so
pic = $(patsubst %.c,$(BUILD)/pic/%.o,$(1))

$(call obj,$(VSC_SRC)) $(call pic,$(VSC_LIB_SRC)): CFLAGS += $(PKG_CFLAGS)
$(call obj,$(VSC_SRC)) $(call pic,$(VSC_LIB_SRC)): | $(PROTO_H)
$(LIB_VECSHARD): $(call obj,$(VSC_LIB_SRC))
$(SO_VECSHARD): $(call pic,$(VSC_LIB_SRC)) clients/c/libvecshard.map
	$(CC) -shared -Wl,-soname,libvecshard.so -Wl,--no-undefined \
	  -Wl,--version-script=clients/c/libvecshard.map $(LDFLAGS) -o $@ \
	  $(call pic,$(VSC_LIB_SRC)) $(PKG_LIBS) $(LDLIBS)

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC -MMD -MP -c $< -o $@

-include $(shell find $(BUILD)/pic -name '*.d' 2>/dev/null)

# The docs' quick start, compiled with only clients/c on the include path and
# linked with only libvecshard.so: proves the header stands alone and the .so
# exports what a program needs (tests/unit/clients_c runs it).
BIN_C_EXAMPLE := $(BUILD)/vecshard-c-example
$(BIN_C_EXAMPLE): clients/c/examples/quickstart.c clients/c/vecshard.h $(SO_VECSHARD)
	$(CC) -std=gnu11 -g -O2 -Wall -Wextra $(WERROR) $(SAN) -Iclients/c -o $@ $< \
	  -L$(BUILD) -lvecshard -Wl,-rpath,$(abspath $(BUILD))
all: $(LIB_VECSHARD) $(SO_VECSHARD) $(BIN_C_EXAMPLE)
# ------------------------------------------------------------ end libvecshard (C client)

# ---------------------------------------------------------------- vecshard (CLI)
# The command-line client (tools/cli/*.c) of the public VecShard service,
# built on libvecshard (its only way to the router); reads vector files with
# tools/bench/dataset. docs/cli.md is its manual.
CLI_SRC := $(wildcard tools/cli/*.c)
BIN_CLI := $(BUILD)/vecshard
$(BIN_CLI): $(call obj,$(CLI_SRC)) $(BUILD)/obj/tools/bench/dataset.o $(LIB_VECSHARD) \
            $(LIB_UTIL)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)
BINS += $(BIN_CLI)
# ------------------------------------------------------------ end vecshard (CLI)

# ---------------------------------------------------------------- vecshard-router
# The stateless router process (router/main.c) over the router library
# (router/*.c, router/controller/*.c: public VecShard service, etcd routing
# table, write routing, search fan-out and merge; docs/router.md), which a
# node's coordinator port serves too (defined above the node).
BIN_ROUTER := $(BUILD)/vecshard-router
$(BUILD)/obj/router/main.o: CFLAGS += $(PKG_CFLAGS)
# The engine library only for hnsw_vector_check: the router refuses the same
# vectors as the nodes, with the same messages.
$(BIN_ROUTER): $(BUILD)/obj/router/main.o $(LIB_ROUTER) $(LIB_HTTP) $(LIB_RPC) $(LIB_METRICS) \
               $(LIB_CLUSTER) $(LIB_ETCD) $(LIB_FILTER) $(LIB_PROTO) $(LIB_HNSW) $(LIB_UTIL)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(MHD_LIBS) $(LDLIBS)
BINS += $(BIN_ROUTER)
# ------------------------------------------------------------ end vecshard-router

all: $(BINS)
.DEFAULT_GOAL := all

# ---------------------------------------------------------------- integration
# tests/integration: real etcd + real vecshard-node processes started by
# tests/integration/harness.py and driven by Python unittest. vs-c-client is
# the C client (common/rpc + protobuf-c) those tests run; vecshard-bench-node
# measures a node over gRPC against the engine in-process (`make bench-node`,
# scripts/bench_node.sh).
BIN_C_CLIENT   := $(BUILD)/vs-c-client
BIN_BENCH_NODE := $(BUILD)/vecshard-bench-node
BENCH_NODE_SRC := $(wildcard tools/node_bench/*.c)
$(call obj,tests/integration/c_client.c $(BENCH_NODE_SRC)): CFLAGS += $(PKG_CFLAGS)
$(BIN_C_CLIENT): $(call obj,tests/integration/c_client.c) $(BUILD)/obj/tools/bench/dataset.o \
                 $(BUILD)/obj/tools/node_bench/shard_calls.o $(LIB_RPC) $(LIB_METRICS) $(LIB_FILTER) $(LIB_PROTO) \
                 $(LIB_UTIL)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)
$(BIN_BENCH_NODE): $(call obj,$(BENCH_NODE_SRC)) $(BUILD)/obj/tools/bench/dataset.o \
                   $(LIB_RPC) $(LIB_METRICS) $(LIB_FILTER) $(LIB_PROTO) $(LIB_HNSW) $(LIB_UTIL)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)
all: $(BIN_C_CLIENT) $(BIN_BENCH_NODE)

.PHONY: integration bench-node

# vecshard-bench-filter (tools/filter_bench): filtered search in one replica,
# in-process, per selectivity against the naive alternatives (docs/filtering.md).
BIN_BENCH_FILTER := $(BUILD)/vecshard-bench-filter
$(call obj,tools/filter_bench/filter_bench.c): CFLAGS += $(PKG_CFLAGS)
$(BIN_BENCH_FILTER): $(call obj,tools/filter_bench/filter_bench.c) $(BUILD)/obj/tools/bench/dataset.o \
                     $(LIB_NODE) $(LIB_FILTER) $(LIB_PROTO) $(LIB_HNSW) $(LIB_UTIL)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)
all: $(BIN_BENCH_FILTER)

# make bench-filter: 200k x 128 synthetic (BENCH_FILTER_ARGS to change it).
BENCH_FILTER_ARGS ?= --n 200000 --queries 1000 --dim 128
.PHONY: bench-filter
bench-filter: $(BIN_BENCH_FILTER)
	$(BIN_BENCH_FILTER) $(BENCH_FILTER_ARGS)
integration: $(BUILD)/vecshard-node $(BUILD)/vecshard-router $(BUILD)/vecshard $(BIN_BENCH) \
             $(BIN_C_CLIENT) $(PROTO_PY)
	VS_BUILD=$(abspath $(BUILD)) $(PYTHON) -m unittest discover -s tests/integration -v

# deploy/k8s: both overlays render (kubectl kustomize), pass the Kubernetes API
# schemas (deploy/k8s/test, npm ci by `make deps`), and each overlay's
# containers run as local processes through a create / upsert / search
# (tests/integration/test_k8s_manifests.py, also part of `make integration`).
.PHONY: k8s-check
k8s-check: $(BUILD)/vecshard-node $(BUILD)/vecshard-router $(BUILD)/vecshard $(PROTO_PY)
	cd tests/integration && VS_BUILD=$(abspath $(BUILD)) $(PYTHON) -m unittest -v test_k8s_manifests

# clients/python: the vecshard Python package, run from the source tree with
# the stubs of $(BUILD)/gen/python (the PYTHONPATH way of docs/clients.md),
# against real etcd, node and router processes (tests/integration harness).
.PHONY: clients-python
clients-python: $(BUILD)/vecshard-node $(BUILD)/vecshard-router $(PROTO_PY)
	VS_BUILD=$(abspath $(BUILD)) $(PYTHON) -m unittest discover -s clients/python/tests -v

# tests/chaos/chaos.py: random kill -9 of a node, router or etcd under mixed
# load, R = 2 on 4 nodes; each round checks 0 acknowledged writes lost and equal
# digests, and a table is printed. `make chaos` runs CHAOS_ROUNDS (10) rounds,
# CHAOS_REBALANCE_ROUNDS (4) rebalance rounds (a join or a drain, kill -9 of a
# running move's source, target or the controller) and the long variants of
# the replication and rebalance scenarios (VS_REPL_LONG=1: test_repl_*.py,
# test_rebalance_*.py); `make chaos-short` (part of `make test`) runs 2 rounds
# and 1 rebalance round.
CHAOS_ROUNDS ?= 10
CHAOS_REBALANCE_ROUNDS ?= 4
REPL_DEPS := $(BUILD)/vecshard-node $(BUILD)/vecshard-router $(PROTO_PY)
.PHONY: chaos chaos-short bench-repl bench-rebalance bench-security
chaos: $(REPL_DEPS)
	VS_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/chaos/chaos.py --rounds $(CHAOS_ROUNDS) \
	  --rebalance-rounds $(CHAOS_REBALANCE_ROUNDS)
	VS_BUILD=$(abspath $(BUILD)) VS_REPL_LONG=1 $(PYTHON) -m unittest discover \
	  -s tests/integration -p 'test_re[pb]*_*.py' -v
chaos-short: $(REPL_DEPS)
	VS_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/chaos/chaos.py --rounds 2 --rebalance-rounds 1

# scripts/bench_security.py: search QPS and p50 through the router with TLS on
# every hop + API keys against plaintext, two clusters side by side.
bench-security: $(REPL_DEPS) $(BUILD)/vecshard
	VS_BUILD=$(abspath $(BUILD)) $(PYTHON) scripts/bench_security.py $(BENCH_SECURITY_ARGS)

# scripts/bench_repl.py: R = 2 vs R = 1 write throughput and ack latency,
# failover time over 10 kills, transfer rate and time to restore R.
bench-repl: $(REPL_DEPS)
	VS_BUILD=$(abspath $(BUILD)) $(PYTHON) scripts/bench_repl.py $(BENCH_REPL_ARGS)

# scripts/bench_rebalance.py: 1M x 128 from 2 to 4 nodes: time and MB/s of the
# moves, search p50/p99 before and during them (BENCH_REBALANCE_ARGS=--quick).
bench-rebalance: $(REPL_DEPS)
	VS_BUILD=$(abspath $(BUILD)) $(PYTHON) scripts/bench_rebalance.py $(BENCH_REBALANCE_ARGS)

bench-node: $(BUILD)/vecshard-node $(BIN_BENCH_NODE)
	PYTHON=$(PYTHON) scripts/bench_node.sh $(BUILD)

# ---------------------------------------------------------------- image-check
# scripts/image_check.sh: deploy/docker/Dockerfile without a Docker daemon:
# debootstrap a minimal Debian 12 root, run the Dockerfile's `setup.sh
# runtime` (runtime-packages.txt, the user) in it, copy the binaries in, run
# ldd, --version and an etcd + node + router + CLI smoke inside it as the
# image's user. The binaries come from the build stage, run first in a
# second root (build-packages.txt, make); IMAGE_CHECK_BUILD=0 uses this
# build's instead. Needs root and Debian's archive; the roots are cached under
# $(BUILD)/image-check/ (IMAGE_CHECK_FRESH=1 rebuilds them).
# deploy/docker/README.md.
IMAGE_CHECK_BUILD ?= 1
.PHONY: image-check
image-check: $(if $(filter 0,$(IMAGE_CHECK_BUILD)),$(BIN_NODE) $(BIN_ROUTER) $(BIN_CLI))
	VS_BUILD=$(abspath $(BUILD)) IMAGE_CHECK_BUILD=$(IMAGE_CHECK_BUILD) scripts/image_check.sh

# ---------------------------------------------------------------- clients/node
# The Node.js client (clients/node, docs/clients.md ("Node.js")): its TypeScript
# declarations checked by tsc, then its tests (node --test) against a local
# cluster that test/cluster.js starts with deploy/local/cluster.sh and stops.
# `make deps` installs its npm packages (npm ci from package-lock.json).
.PHONY: clients-node
clients-node: $(BUILD)/vecshard-node $(BUILD)/vecshard-router
	cd clients/node && npm run --silent typecheck && \
	  VS_BUILD=$(abspath $(BUILD)) node --test test/*.test.js

# ---------------------------------------------------------------- tests
# One CUnit runner per module: tests/unit/<module>/*.c -> build/test_<module>.
# UNIT_OBJS_<module> adds objects of a process that are not in a library.
UNIT_OBJS_router := $(call obj,router/controller/placement.c router/controller/failover.c \
                      router/controller/moves_view.c router/controller/rebalance.c \
                      router/route_table.c router/auth.c)
# tests/unit/clients_c runs libvecshard against real etcd, vecshard-node and
# vecshard-router processes of the same build (etcd via tests/unit/etcd's helper).
UNIT_OBJS_clients_c := $(LIB_VECSHARD) $(call obj,tests/unit/etcd/etcd_server.c)
$(call obj,$(wildcard tests/unit/clients_c/*.c)): CFLAGS += -DVS_TEST_BUILD='"$(abspath $(BUILD))"'
$(BUILD)/test_clients_c: | $(BIN_NODE) $(BIN_ROUTER) $(BIN_C_EXAMPLE)
UNIT_OBJS_cluster := $(call obj,tests/unit/etcd/etcd_server.c)
UNIT_MODULES := $(patsubst tests/unit/%/,%,$(sort $(dir $(wildcard tests/unit/*/*.c))))
UNIT_BINS    := $(addprefix $(BUILD)/test_,$(UNIT_MODULES))
# Link order: dependents before what they use.
UNIT_LIBS    := $(LIB_NODE) $(LIB_HTTP) $(LIB_RPC) $(LIB_METRICS) $(LIB_FILTER) $(LIB_PROTO) $(LIB_CLUSTER) \
                $(LIB_ETCD) $(LIB_HNSW) $(LIB_UTIL)

define unit_rule
$(call obj,$(wildcard tests/unit/$(1)/*.c)): CFLAGS += $$(PKG_CFLAGS)
$(BUILD)/test_$(1): $(call obj,$(wildcard tests/unit/$(1)/*.c)) $$(UNIT_OBJS_$(1)) $(UNIT_LIBS)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ -lcunit $$(PKG_LIBS) $$(MHD_LIBS) $$(LDLIBS)
endef
$(foreach m,$(UNIT_MODULES),$(eval $(call unit_rule,$(m))))

.PHONY: all deps test unit asan bench bench-peer bench-cluster bench-restart demo demo-engine clean format data

deps:
	@scripts/deps.sh

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) fuzz-smoke
	$(MAKE) integration
	$(MAKE) chaos-short
	$(MAKE) clients-python
	$(MAKE) clients-node
	$(MAKE) image-check

asan:
	$(MAKE) BUILD=build/asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" unit

# ---------------------------------------------------------------- fuzzing
# tests/fuzz/fuzz_<target>.c: libFuzzer targets (docs/security.md §5), built
# with clang-14 under ASan + UBSan into $(FUZZ_BUILD); the code they reach
# is compiled again there with the same sanitizers (fuzzer-no-link).
#   make fuzz        every target for FUZZ_TIME seconds (default 60), seeded
#                    by tests/fuzz/corpus/<target>/; new inputs go to
#                    $(FUZZ_BUILD)/corpus/<target>/, crashes to $(FUZZ_BUILD)/crash-*
#   make fuzz-smoke  every committed corpus input once, then FUZZ_SMOKE_RUNS
#                    random inputs per target (part of make test)
FUZZ_CC        ?= clang-14
FUZZ_BUILD     := $(BUILD)/fuzz
FUZZ_TIME      ?= 60
FUZZ_SMOKE_RUNS ?= 2000
FUZZ_SAN       := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS     = -std=gnu11 -g -O1 -fno-strict-aliasing -pthread -Wall -Wextra $(WERROR) \
                  -Wno-missing-field-initializers -I. -I$(BUILD)/gen -I$(BUILD)/gen/proto \
                  $(PKG_CFLAGS) $(FUZZ_SAN)
FUZZ_TARGETS   := $(patsubst tests/fuzz/fuzz_%.c,%,$(filter-out tests/fuzz/fuzz_common.c,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_LIB_SRC   := $(UTIL_SRC) $(HNSW_SRC) $(NODE_LIB_SRC) $(FILTER_SRC) common/rpc/pb.c $(CLUSTER_SRC) \
                  $(ETCD_SRC) tools/bench/dataset.c tests/fuzz/fuzz_common.c $(PROTO_C)
FUZZ_LIB       := $(FUZZ_BUILD)/libvs_fuzz.a
FUZZ_BINS      := $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))

$(FUZZ_BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIB_SRC))
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB) | $(PROTO_H)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) $(PKG_LIBS) -lm

# The seed of fuzz_hnsw_load's corpus (scripts/fuzz_corpus.py), an ordinary binary.
$(BUILD)/hnsw_seed: $(call obj,tests/fuzz/hnsw_seed.c) $(LIB_HNSW) $(LIB_UTIL)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: fuzz fuzz-build fuzz-smoke fuzz-corpus
fuzz-corpus: $(BUILD)/hnsw_seed $(BUILD)/vecshard-node $(PROTO_PY)
	$(PYTHON) scripts/fuzz_corpus.py $(BUILD)

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  echo "== fuzz_$$t for $(FUZZ_TIME) s"; \
	  $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t; \
	done

fuzz-smoke: $(FUZZ_BINS)
	@set -e; mkdir -p $(FUZZ_BUILD)/smoke; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz_$$t: committed corpus, then $(FUZZ_SMOKE_RUNS) runs"; \
	  log=$(FUZZ_BUILD)/smoke/$$t.log; mkdir -p $(FUZZ_BUILD)/smoke/$$t; \
	  $(FUZZ_BUILD)/fuzz_$$t -runs=0 tests/fuzz/corpus/$$t > $$log 2>&1 && \
	  $(FUZZ_BUILD)/fuzz_$$t -runs=$(FUZZ_SMOKE_RUNS) -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- $(FUZZ_BUILD)/smoke/$$t tests/fuzz/corpus/$$t \
	    >> $$log 2>&1 || { tail -40 $$log; echo "fuzz_$$t failed (log: $$log)"; exit 1; }; \
	  tail -1 $$log; \
	done

-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------- benchmarks
DATA := $(BUILD)/data

$(DATA)/mnist/base.fvecs:
	@mkdir -p $(@D)
	$(PYTHON) scripts/make_mnist.py $(DATA)/mnist || \
	  $(PYTHON) scripts/make_mnist_fallback.py $(DATA)/mnist

$(DATA)/synth200k/base.fvecs: $(BIN_BENCH)
	$(BIN_BENCH) --synthetic 200000,128,100,42 --queries 1000 --write $(DATA)/synth200k

data: $(DATA)/mnist/base.fvecs

bench: $(BIN_BENCH) $(DATA)/mnist/base.fvecs
	$(BIN_BENCH) --base $(DATA)/mnist/base.fvecs --query $(DATA)/mnist/query.fvecs \
	  --gt $(DATA)/mnist/gt.ivecs --M 16 --efc 200 --threads 2 --ef 10,20,40,80,160,320
	$(BIN_BENCH) --synthetic 100000,128,100,42 --M 16 --efc 200 --threads 2 --ef 10,20,40,80,160
	$(MAKE) bench-node
	$(MAKE) bench-cluster

# scripts/bench_cluster.sh: `vecshard search` on a 3-node local cluster
# (deploy/local/cluster.sh) and on one node, against vecshard-bench.
bench-cluster: $(BIN_BENCH) $(DATA)/mnist/base.fvecs
	$(MAKE) all
	PYTHON=$(PYTHON) scripts/bench_cluster.sh $(BUILD)

# scripts/bench_restart.py: 200k x 128-d in one node; restart after SIGTERM
# (shutdown snapshots) and after kill -9 with 8 and 32 MiB of WAL to replay.
bench-restart: $(BUILD)/vecshard-node
	VS_BUILD=$(BUILD) $(PYTHON) scripts/bench_restart.py $(BENCH_RESTART_ARGS)

.PHONY: bench-hedge
# scripts/bench_hedge.py: p50/p99 of searches with one replica of each shard
# made slow by 100 ms SIGSTOP pulses, through a hedging and a plain router.
bench-hedge: $(BUILD)/vecshard-node $(BUILD)/vecshard-router $(PROTO_PY)
	VS_BUILD=$(abspath $(BUILD)) $(PYTHON) scripts/bench_hedge.py $(BENCH_HEDGE_ARGS)

bench-peer: $(BIN_BENCH) $(BIN_PEER) $(DATA)/mnist/base.fvecs $(DATA)/synth200k/base.fvecs
	$(PYTHON) scripts/bench_peer.py --bench $(BIN_BENCH) --peer $(BIN_PEER) \
	  --data $(DATA)/mnist --data $(DATA)/synth200k

demo: deps
	$(MAKE) all $(DATA)/mnist/base.fvecs
	scripts/demo.sh $(BUILD)

demo-engine: deps
	$(MAKE) all $(DATA)/mnist/base.fvecs
	scripts/demo_engine.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cpp')

clean:
	rm -rf $(BUILD)
