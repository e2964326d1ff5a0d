/* cpu_ops.h: what the CPU backend's table calls into (internal to backends/cpu). */
#ifndef R1_CPU_OPS_H
#define R1_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "threadpool.h"

/* "x86-64 CPU (avx512 kernels)" and the like. */
const char *r1_cpu__description(void);
void r1_cpu__memory(uint64_t *total_bytes, uint64_t *available_bytes);

void *r1_cpu__buf_data(r1_buf *buf);
size_t r1_cpu__buf_bytes(const r1_buf *buf);

int32_t r1_cpu__op_supported(const r1_op *op);
/* Runs op on pool (NULL: the process-wide default pool). */
r1_status r1_cpu__op_run(r1_threadpool *pool, const r1_op *op);

/* The rest of a layer (R1_OP_RMSNORM .. R1_OP_MOE_COMBINE; cpu_layer_ops.c), on the caller's
 * thread: small next to the products around them. */
int32_t r1_cpu__layer_op_supported(const r1_op *op);
r1_status r1_cpu__layer_op_run(const r1_op *op);

#endif
