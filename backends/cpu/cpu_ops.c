/* cpu_ops.c: the CPU backend's op dispatch and host description. */
#include "cpu_ops.h"

#include <stdio.h>
#include <unistd.h>

#include "cpu_features.h"
#include "error.h"

const char *r1_cpu__description(void)
{
    static _Thread_local char text[64];
    snprintf(text, sizeof text, "host CPU (%s kernels)",
             r1_cpu__level_name(r1_cpu__active_level()));
    return text;
}

void r1_cpu__memory(uint64_t *total_bytes, uint64_t *available_bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    long total = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    *total_bytes = (page > 0 && total > 0) ? (uint64_t)page * (uint64_t)total : 0;
    *available_bytes = (page > 0 && avail > 0) ? (uint64_t)page * (uint64_t)avail : 0;
}

int32_t r1_cpu__op_supported(const r1_op *op)
{
    (void)op;
    return 0;
}

r1_status r1_cpu__op_run(const r1_op *op)
{
    return r1_error__set(R1_ERR_UNSUPPORTED, "cpu backend: op kind %d is not implemented",
                         (int)op->kind);
}
