/* host_weights.h: the model file's dense Q8_0/Q4_0 weights in the layout the host CPU's
 * kernels read fastest, made on first use and kept for the model's life (internal).
 *
 * The mapped file holds weights in rows (the format's layout, which every backend can read);
 * the CPU's integer kernels stream R16 groups (weight_layout.h) at the memory's bandwidth and
 * rows at about half of it. Routed experts are rewritten as the expert store loads them; this
 * map does the same once for each dense weight a product reads from the mapping (attention
 * projections, shared experts, dense MLPs, the output head). Once a weight is copied, the pages
 * of the mapping it filled are given back (r1_container__release), so memory holds its bytes
 * once: the resident set counts the copy, not the copy and the mapped original. */
#ifndef R1_HOST_WEIGHTS_H
#define R1_HOST_WEIGHTS_H

#include <stdint.h>

#include "container.h"
#include "r1.h"
#include "tensor.h"

typedef struct r1_host_weights r1_host_weights;

typedef struct r1_host_weights_counters {
    uint64_t tensors;  /* weights held in the R16 layout */
    uint64_t bytes;    /* their bytes */
    uint64_t kept;     /* weights left in rows for want of memory */
    uint64_t released; /* bytes of the source's mapping given back after a copy */
} r1_host_weights_counters;

r1_status r1_host_weights__create(r1_host_weights **out);
void r1_host_weights__destroy(r1_host_weights *hw); /* accepts NULL */

/* The container whose mapping the weights are read from (borrowed; NULL: none): once a weight of
 * it is copied, its pages there are released (r1_container__release). A view read in place as
 * well (kv_b_proj by the attention op, the embedding rows, a tied head) faults its pages back in
 * when read: correct, merely counted twice. */
void r1_host_weights__set_source(r1_host_weights *hw, const r1_container *c);

/* When w (in rows, its data unchanging for the map's life: the mapped file's) can take the R16
 * layout, *out is the same weight in it, made now on the first request, and 1 is returned;
 * else 0 (also when memory for the copy ran out: the product then reads w as it is). A view
 * is keyed by its first byte, size, type and shape, so a merged view (two adjacent weights)
 * or a row range is a weight of its own. Thread-safe. */
int32_t r1_host_weights__get(r1_host_weights *hw, const r1_tensor *w, r1_tensor *out);

void r1_host_weights__counters(r1_host_weights *hw, r1_host_weights_counters *out);

#endif
