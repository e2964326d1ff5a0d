/* cli_memory.h: the --expert-ram, --device-expert-ram and --expert-policy flags of r1. */
#ifndef R1_CLI_MEMORY_H
#define R1_CLI_MEMORY_H

#include <stdint.h>
#include <stdio.h>

#include "r1.h"

/* What the flags asked for; both default to auto. */
typedef struct r1_cli_memory {
    int32_t expert_auto;   /* 1: r1_model_opts_set_expert_cache_auto */
    uint64_t expert_bytes; /* else this budget (0: unbounded) */
    int32_t device_auto;   /* 1: bounded by the device's memory */
    uint64_t device_bytes; /* else this budget */
    int32_t context;       /* tokens of KV cache auto leaves room for (0: the default) */
    int32_t policy;        /* --expert-policy: R1_CACHE_POLICY_*, or -1 for the library's */
} r1_cli_memory;

/* The flags of this run, read by r1_cli_load_model() (a process has one command line). */
extern r1_cli_memory r1_cli_mem;

/* Parses "auto" (*is_auto = 1) or a byte count with an optional binary suffix K, M, G or T (and
 * an optional trailing B or iB; fractions allowed: 1.5G), e.g. 4G, 512M, 1073741824. 0, or -1
 * with a message naming opt. */
int r1_cli_parse_bytes(const char *opt, const char *text, uint64_t *out, int32_t *is_auto);
/* Consumes argv[*i] and its value when it is --expert-ram, --device-expert-ram or
 * --expert-policy: 1 consumed, 0 not one of these, -1 malformed (message printed). */
int r1_cli_memory_option(int argc, char **argv, int *i);
/* Applies the flags to o; the library's message is printed on failure. */
r1_status r1_cli_memory_apply(r1_model_opts *o);
void r1_cli_memory_usage(FILE *to);

#endif
