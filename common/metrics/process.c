/*
 * process.c — the standard process collector, read from /proc at every
 * scrape: resident memory (/proc/self/statm), open file descriptors
 * (entries of /proc/self/fd), CPU seconds (utime + stime of /proc/self/stat)
 * and the start time (its starttime field plus btime of /proc/stat), and
 * vecshard_build_info{program,version} 1. A file that cannot be read leaves
 * its family without a sample (the HELP and TYPE lines stay).
 */
#define _GNU_SOURCE
#include "common/metrics/metrics_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct process_info {
    char program[64];
    char version[64];
};

/* Resident set size in bytes, or -1. */
static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return -1;
    unsigned long size, resident;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) : -1;
}

/* Open file descriptors (not counting the one used to list them), or -1. */
static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return (double)(n - 1);
}

/* CPU seconds and start time (Unix seconds) from /proc/self/stat; 0 or -1. */
static int cpu_and_start(double *cpu, double *start)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name may hold spaces and parentheses: fields start after the last ')' */
    char *p = strrchr(buf, ')');
    if (p == NULL) return -1;
    unsigned long utime, stime;
    unsigned long long starttime;
    /* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime priority nice threads itrealvalue starttime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                      "%*d %llu",
               &utime, &stime, &starttime) != 3)
        return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    *cpu = (double)(utime + stime) / hz;

    f = fopen("/proc/stat", "r");
    if (f == NULL) return -1;
    unsigned long long btime = 0;
    char line[256];
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "btime %llu", &btime) == 1) break;
    fclose(f);
    if (btime == 0) return -1;
    *start = (double)btime + (double)starttime / hz;
    return 0;
}

/* The collector. */
static void collect_process(struct metrics_writer *w, void *user)
{
    const struct process_info *pi = user;
    double rss = rss_bytes(), fds = open_fds(), cpu = 0, start = 0;
    bool have_cpu = cpu_and_start(&cpu, &start) == 0;

    metrics_family(w, "vecshard_process_resident_memory_bytes", "gauge",
                   "Resident memory size of the process in bytes");
    if (rss >= 0) metrics_sample(w, "vecshard_process_resident_memory_bytes", rss, NULL);
    metrics_family(w, "vecshard_process_open_fds", "gauge", "Open file descriptors of the process");
    if (fds >= 0) metrics_sample(w, "vecshard_process_open_fds", fds, NULL);
    metrics_family(w, "vecshard_process_cpu_seconds_total", "counter",
                   "User and system CPU time of the process in seconds");
    if (have_cpu) metrics_sample(w, "vecshard_process_cpu_seconds_total", cpu, NULL);
    metrics_family(w, "vecshard_process_start_time_seconds", "gauge",
                   "Start time of the process since the Unix epoch in seconds");
    if (have_cpu) metrics_sample(w, "vecshard_process_start_time_seconds", start, NULL);
    metrics_family(w, "vecshard_build_info", "gauge",
                   "Always 1; the labels name the program and its version");
    metrics_sample(w, "vecshard_build_info", 1, "program", pi->program, "version", pi->version,
                   NULL);
}

int metrics_add_process(struct metrics *m, const char *program, const char *version)
{
    if (m == NULL || m->process != NULL) return -1;
    struct process_info *pi = calloc(1, sizeof *pi);
    if (pi == NULL) return -1;
    snprintf(pi->program, sizeof pi->program, "%s", program != NULL ? program : "");
    snprintf(pi->version, sizeof pi->version, "%s", version != NULL ? version : "");
    if (metrics_add_collector(m, collect_process, pi) != 0) {
        free(pi);
        return -1;
    }
    m->process = pi; /* freed by metrics_destroy */
    return 0;
}
