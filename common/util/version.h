/*
 * version.h — the one version string of vecshard's processes and CLI.
 *
 * vecshard-node, vecshard-router and vecshard print it for --version (and
 * the processes register it in etcd and in vecshard_build_info). A release
 * changes it here only.
 */
#ifndef VS_UTIL_VERSION_H
#define VS_UTIL_VERSION_H

#define VECSHARD_VERSION "0.1.0"

#endif
