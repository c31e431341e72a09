/*
 * cluster.c — starts and always stops the real cluster the libvecshard
 * tests run against (see cluster.h).
 *
 * Readiness is polled through the library under test itself: the cluster is
 * up when ClusterStatus answers with an etcd revision and every node alive.
 * A process that exits during start-up fails the start at once, naming its
 * log.
 */
#define _GNU_SOURCE
#include "tests/unit/clients_c/cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clients/c/vecshard.h"

/* Every started process, for the exit and signal handlers. */
static volatile pid_t registry[TC_MAX_NODES + 1];
static struct tc_cluster *current;

/* Formats msg and returns -1. */
static int fail(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return -1;
}

/* Sleeps ms milliseconds (between polls). */
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Fatal signal: SIGKILL every child, then die by the signal. */
static void on_fatal(int sig)
{
    for (int i = 0; i <= TC_MAX_NODES; i++)
        if (registry[i] > 0) kill(registry[i], SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* atexit: stop whatever a failed test left running. */
static void on_exit_cleanup(void)
{
    if (current) tc_stop(current);
}

/* Installs the handlers once (etcd_server installs its own for etcd). */
static void install_handlers(void)
{
    static int done;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE};
    if (done) return;
    done = 1;
    atexit(on_exit_cleanup);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* A free loopback port (bound to port 0 and released). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof sa) &&
        !getsockname(fd, (struct sockaddr *)&sa, &sl))
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* Forks and execs argv with output to p->log; registers the pid in slot. */
static int spawn(struct tc_proc *p, int slot, char *const argv[], char *msg, size_t len)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return fail(msg, len, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    p->pid = pid;
    registry[slot] = pid;
    return 0;
}

/* Stops p by pid: SIGTERM, SIGKILL after 10 s; reaps it. */
static void stop_proc(struct tc_proc *p, int slot)
{
    if (p->pid <= 0) return;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) goto reaped;
        sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
reaped:
    p->pid = 0;
    registry[slot] = 0;
}

/* True while p runs (reaps it when it exited). */
static int running(struct tc_proc *p)
{
    if (p->pid <= 0) return 0;
    if (waitpid(p->pid, NULL, WNOHANG) == p->pid) p->pid = 0;
    return p->pid > 0;
}

/* The directory holding vecshard-node and vecshard-router. */
static const char *bin_dir(void)
{
    const char *d = getenv("VS_BUILD");
    return d && *d ? d : VS_TEST_BUILD;
}

/* Polls ClusterStatus until it has a revision and n live nodes; 0 or -1. */
static int wait_router(struct tc_cluster *c, char *msg, size_t len)
{
    struct vecshard_options o = {.timeout_ms = 2000};
    struct vecshard_client *vc;
    struct vecshard_error err;
    int alive = -1;
    if (vecshard_connect(c->router.addr, &o, &vc, &err))
        return fail(msg, len, "connect: %s", err.message);
    for (int i = 0; i < 600; i++) { /* 30 s */
        for (int n = 0; n < c->n_nodes; n++)
            if (!running(&c->nodes[n])) {
                vecshard_close(vc);
                return fail(msg, len, "node-%d exited during start-up, see %s", n, c->nodes[n].log);
            }
        if (!running(&c->router)) {
            vecshard_close(vc);
            return fail(msg, len, "the router exited during start-up, see %s", c->router.log);
        }
        struct vecshard_cluster_status *st;
        if (vecshard_cluster_status(vc, NULL, &st, &err) == VECSHARD_OK) {
            alive = 0;
            for (size_t n = 0; n < st->n_nodes; n++)
                alive += st->nodes[n].alive;
            int up = st->revision > 0 && alive == c->n_nodes;
            vecshard_cluster_status_free(st);
            if (up) {
                vecshard_close(vc);
                return 0;
            }
        }
        sleep_ms(50);
    }
    vecshard_close(vc);
    return fail(msg, len,
                "router at %s does not see %d live nodes after 30 s "
                "(last: %d), see %s",
                c->router.addr, c->n_nodes, alive, c->router.log);
}

/* Starts the cluster; see cluster.h. */
int tc_start(struct tc_cluster *c, int n_nodes, char *msg, size_t len)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char bin[512], etcd_url[64], data[300];
    memset(c, 0, sizeof *c);
    install_handlers();
    current = c;
    c->n_nodes = n_nodes;
    snprintf(c->root, sizeof c->root, "%s/vs-clients-c-test-XXXXXX", tmp);
    if (!mkdtemp(c->root)) {
        c->root[0] = '\0';
        return fail(msg, len, "mkdtemp: %s", strerror(errno));
    }
    if (etcd_server_start(&c->etcd, msg, len)) goto fail;
    snprintf(etcd_url, sizeof etcd_url, "%s", c->etcd.url);

    snprintf(bin, sizeof bin, "%s/vecshard-node", bin_dir());
    for (int n = 0; n < n_nodes; n++) {
        struct tc_proc *p = &c->nodes[n];
        char id[32];
        snprintf(id, sizeof id, "node-%d", n);
        snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", free_port());
        snprintf(p->log, sizeof p->log, "%s/%s.log", c->root, id);
        snprintf(data, sizeof data, "%s/%s", c->root, id);
        mkdir(data, 0755);
        char *argv[] = {bin,    "--listen",   p->addr, "--advertise", p->addr,  "--node-id",
                        id,     "--data-dir", data,    "--etcd",      etcd_url, "--fsync",
                        "none", "--threads",  "2",     "--lease-ttl", "3",      NULL};
        if (spawn(p, n, argv, msg, len)) goto fail;
    }
    snprintf(bin, sizeof bin, "%s/vecshard-router", bin_dir());
    snprintf(c->router.addr, sizeof c->router.addr, "127.0.0.1:%d", free_port());
    snprintf(c->router.log, sizeof c->router.log, "%s/router.log", c->root);
    char *argv[] = {bin, "--listen", c->router.addr, "--etcd", etcd_url, "--threads", "8", NULL};
    if (spawn(&c->router, TC_MAX_NODES, argv, msg, len)) goto fail;
    if (wait_router(c, msg, len)) goto fail;
    return 0;
fail:
    tc_stop(c);
    return -1;
}

/* nftw callback: removes one entry. */
static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Stops everything and removes the temp dirs. */
void tc_stop(struct tc_cluster *c)
{
    stop_proc(&c->router, TC_MAX_NODES);
    for (int n = 0; n < c->n_nodes; n++)
        stop_proc(&c->nodes[n], n);
    etcd_server_destroy(&c->etcd);
    if (c->root[0]) nftw(c->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    c->root[0] = '\0';
    if (current == c) current = NULL;
}
