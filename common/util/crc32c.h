/*
 * crc32c.h — CRC-32C (Castagnoli), the checksum of every on-disk section and
 * WAL record in vecshard. Software slicing-by-8, or the SSE4.2 instruction
 * when the CPU has it (chosen at run time), so files written on one machine
 * verify on any other.
 */
#ifndef VS_UTIL_CRC32C_H
#define VS_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes of buf and returns the new value. */
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

/* CRC-32C of one buffer. */
static inline uint32_t crc32c(const void *buf, size_t len)
{
    return crc32c_extend(0, buf, len);
}

#endif
