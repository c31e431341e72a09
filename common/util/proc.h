/*
 * proc.h — the start-up and shutdown shape every vecshard server process
 * shares (vecshard-node, vecshard-router).
 *
 * Stop signals (SIGTERM, SIGINT) and the reload signal (SIGHUP) are blocked
 * in the main thread before any other thread exists, so every thread
 * (gRPC's included) inherits the mask and only proc_wait_stop's sigwait ever
 * sees them; nothing forks. SIGHUP runs the process's reload callback (TLS
 * certificates, API keys; docs/security.md) on the waiting thread and the
 * wait goes on. A second stop signal during shutdown exits at once with
 * status 1; a SIGHUP during shutdown is ignored. Once the
 * server is bound, the process prints `listening on host:port` on stdout:
 * the line scripts and tests wait for.
 *
 * libc + pthreads only; messages go through log.h.
 */
#ifndef VS_UTIL_PROC_H
#define VS_UTIL_PROC_H

#include <signal.h>
#include <stddef.h>

/*
 * Fills set with the stop signals and blocks them in the calling thread;
 * ignores SIGPIPE. Call before any thread is created.
 */
void proc_block_stop_signals(sigset_t *set);

/*
 * Waits for a stop signal of set, logs "shutting down" with its name, and
 * starts a detached watchdog that exits the process with status 1 on a
 * second one. Returns the signal. Each SIGHUP before it logs "reloading"
 * and calls reload(user) (NULL: nothing to reload, logged), then waits on.
 */
int proc_wait_stop(const sigset_t *set, void (*reload)(void *user), void *user);

/* Writes listen's host with the bound port into buf ("0.0.0.0:7400"). */
void proc_bound_addr(const char *listen, int port, char *buf, size_t size);

/* Prints "listening on <addr>" on stdout and flushes it. */
void proc_print_listening(const char *addr);

#endif
