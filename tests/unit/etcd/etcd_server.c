/*
 * etcd_server.c — starts, restarts and always cleans up a loopback etcd for
 * tests (see etcd_server.h).
 *
 * Cleanup has three layers because a test binary can end in three ways:
 * normally (atexit destroys every registered server), by a fatal signal (the
 * handler SIGKILLs the registered pids and forks "rm -rf" on their dirs, all
 * async-signal-safe calls, then re-raises), or by SIGKILL of the test itself
 * (etcd gets SIGKILL from PR_SET_PDEATHSIG; only then can a dir be left in
 * $TMPDIR). Ports come from binding port 0 and are retried if etcd loses the
 * race for them.
 */
#define _GNU_SOURCE
#include "etcd_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERVERS 4

/* Registered servers; read by the exit and signal handlers. */
static struct etcd_server *registry[MAX_SERVERS];
static volatile pid_t registry_pid[MAX_SERVERS];
static char registry_root[MAX_SERVERS][256];
static int handlers_installed;

/* Formats msg (if not NULL) and returns -1. */
static int fail(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (msg && len) {
        va_start(ap, fmt);
        vsnprintf(msg, len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Fatal-signal handler: kill etcds, remove their dirs, die by the signal. */
static void on_fatal(int sig)
{
    for (int i = 0; i < MAX_SERVERS; i++) {
        pid_t pid = registry_pid[i];
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        if (registry_root[i][0]) {
            pid_t rm = fork();
            if (rm == 0) {
                execl("/bin/rm", "rm", "-rf", registry_root[i], (char *)NULL);
                _exit(127);
            }
            if (rm > 0) waitpid(rm, NULL, 0);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* atexit: destroy whatever tests left running. */
static void on_exit_cleanup(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (registry[i]) etcd_server_destroy(registry[i]);
}

/* Installs the exit and signal handlers once. */
static void install_handlers(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE};
    struct sigaction sa;

    if (handlers_installed) return;
    handlers_installed = 1;
    atexit(on_exit_cleanup);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* Records s in the registry (slot kept until destroy). */
static void registry_set(struct etcd_server *s)
{
    int free_slot = -1;

    for (int i = 0; i < MAX_SERVERS; i++) {
        if (registry[i] == s) free_slot = i;
        if (registry[i] == s) break;
        if (!registry[i] && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) return;
    registry[free_slot] = s;
    snprintf(registry_root[free_slot], sizeof registry_root[free_slot], "%s", s->root);
    registry_pid[free_slot] = s->pid;
}

/* Removes s from the registry. */
static void registry_clear(struct etcd_server *s)
{
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (registry[i] != s) continue;
        registry_pid[i] = 0;
        registry_root[i][0] = '\0';
        registry[i] = NULL;
    }
}

/* Two distinct free loopback ports, by binding port 0 twice at once. */
static int free_ports(int *a, int *b)
{
    int fd[2] = {-1, -1}, port[2], rc = -1;

    for (int i = 0; i < 2; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fd[i] < 0 || bind(fd[i], (struct sockaddr *)&sa, sizeof sa) ||
            getsockname(fd[i], (struct sockaddr *)&sa, &len))
            goto done;
        port[i] = ntohs(sa.sin_port);
    }
    *a = port[0];
    *b = port[1];
    rc = 0;
done:
    for (int i = 0; i < 2; i++)
        if (fd[i] >= 0) close(fd[i]);
    return rc;
}

/* curl write callback for healthy(): keeps the first 255 bytes. */
static size_t collect(char *p, size_t sz, size_t n, void *arg)
{
    char *body = arg;
    size_t have = strlen(body), add = sz * n;

    if (have + add > 255) add = 255 - have;
    memcpy(body + have, p, add);
    body[have + add] = '\0';
    return sz * n;
}

/* One GET /health; 1 when etcd reports healthy. */
static int healthy(const char *url)
{
    char full[128];
    char body[256] = "";
    CURL *e = curl_easy_init();
    long http = 0;
    CURLcode rc;

    if (!e) return 0;
    snprintf(full, sizeof full, "%s/health", url);
    curl_easy_setopt(e, CURLOPT_URL, full);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)body);
    rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup(e);
    return rc == CURLE_OK && http == 200 && strstr(body, "\"true\"") != NULL;
}

/* Sleeps ms milliseconds. */
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* Forks and execs etcd on s's ports and dir, then waits for /health. */
static int spawn(struct etcd_server *s, char *msg, size_t msg_len)
{
    const char *bin = getenv("ETCD_BIN") ? getenv("ETCD_BIN") : "/usr/bin/etcd";
    char data[300], log[300], curl_url[64], peer[64], cluster[80];
    pid_t parent = getpid(), pid;

    snprintf(data, sizeof data, "%s/data", s->root);
    snprintf(log, sizeof log, "%s/etcd.log", s->root);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->client_port);
    snprintf(curl_url, sizeof curl_url, "%s", s->url);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", s->peer_port);
    snprintf(cluster, sizeof cluster, "n1=%s", peer);
    char *argv[] = {(char *)bin, "--name",
                    "n1",        "--data-dir",
                    data,        "--listen-client-urls",
                    curl_url,    "--advertise-client-urls",
                    curl_url,    "--listen-peer-urls",
                    peer,        "--initial-advertise-peer-urls",
                    peer,        "--initial-cluster",
                    cluster,     "--experimental-watch-progress-notify-interval",
                    "1s",        NULL};

    pid = fork();
    if (pid < 0) return fail(msg, msg_len, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(bin, argv);
        _exit(127);
    }
    s->pid = pid;
    registry_set(s);
    for (int i = 0; i < 100; i++) { /* 10 s */
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            registry_set(s);
            return fail(msg, msg_len, "etcd exited early (status %d), see %s", status, log);
        }
        if (healthy(s->url)) return 0;
        sleep_ms(100);
    }
    etcd_server_stop(s);
    return fail(msg, msg_len, "etcd not healthy after 10 s, see %s", log);
}

/* Starts a fresh server; see etcd_server.h. */
int etcd_server_start(struct etcd_server *s, char *msg, size_t msg_len)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    memset(s, 0, sizeof *s);
    install_handlers();
    snprintf(s->root, sizeof s->root, "%s/vs-etcd-test-XXXXXX", tmp);
    if (!mkdtemp(s->root)) {
        int e = errno;
        s->root[0] = '\0';
        return fail(msg, msg_len, "mkdtemp: %s", strerror(e));
    }
    registry_set(s);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (free_ports(&s->client_port, &s->peer_port))
            return fail(msg, msg_len, "no free port: %s", strerror(errno));
        if (spawn(s, msg, msg_len) == 0) return 0;
    }
    return -1; /* atexit removes the dir */
}

/* Stops and reaps; see etcd_server.h. */
void etcd_server_stop(struct etcd_server *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) goto reaped;
        sleep_ms(100);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
reaped:
    s->pid = 0;
    registry_set(s);
}

/* Starts again on the same ports and dir; see etcd_server.h. */
int etcd_server_restart(struct etcd_server *s, char *msg, size_t msg_len)
{
    int rc = -1;

    etcd_server_stop(s);
    /* The ports are ours only by convention now; retry briefly if taken. */
    for (int attempt = 0; attempt < 3 && rc; attempt++)
        rc = spawn(s, msg, msg_len);
    return rc;
}

/* nftw callback: remove one entry. */
static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Stops and removes the dir; see etcd_server.h. */
void etcd_server_destroy(struct etcd_server *s)
{
    etcd_server_stop(s);
    if (s->root[0]) nftw(s->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    s->root[0] = '\0';
    registry_clear(s);
}
