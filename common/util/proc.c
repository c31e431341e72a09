/*
 * proc.c — stop signals, the second-signal watchdog and the `listening on`
 * line of the server processes (see proc.h).
 */
#define _GNU_SOURCE
#include "common/util/proc.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util/log.h"

/* The signals that stop a server process. */
static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
}

/* Second-signal watchdog: exits at once if shutdown is interrupted. */
static void *second_signal(void *arg)
{
    (void)arg;
    sigset_t set;
    stop_signals(&set);
    int sig = 0;
    if (sigwait(&set, &sig) == 0) {
        log_warn("second signal during shutdown; exiting now", "signal=%s", strsignal(sig));
        _exit(1);
    }
    return NULL;
}

/* Blocks the stop signals in this thread (and so in every later one). */
void proc_block_stop_signals(sigset_t *set)
{
    stop_signals(set);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Waits for the first stop signal; arms the second-signal watchdog. */
int proc_wait_stop(const sigset_t *set, void (*reload)(void *user), void *user)
{
    int sig = 0;
    for (;;) {
        if (sigwait(set, &sig) != 0) continue;
        if (sig != SIGHUP) break;
        if (reload == NULL) {
            log_info("SIGHUP: nothing to reload", NULL);
            continue;
        }
        log_info("reloading", "signal=SIGHUP");
        reload(user);
    }
    log_info("shutting down", "signal=%s", strsignal(sig));
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, second_signal, NULL) == 0) pthread_detach(watchdog);
    return sig;
}

/* Host of listen with the port the server actually bound. */
void proc_bound_addr(const char *listen, int port, char *buf, size_t size)
{
    const char *colon = strrchr(listen, ':');
    snprintf(buf, size, "%.*s:%d", (int)(colon - listen), listen, port);
}

/* The stdout line that tells scripts the server is up. */
void proc_print_listening(const char *addr)
{
    printf("listening on %s\n", addr);
    fflush(stdout);
}
