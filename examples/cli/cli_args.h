/* cli_args.h: small argument helpers shared by the r1 subcommands. */
#ifndef R1_CLI_ARGS_H
#define R1_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

/* The value after option argv[*i] (advancing *i), or NULL with a message when it is missing. */
const char *r1_cli_value(int argc, char **argv, int *i);
/* Parses "1,2,3" into a new array; returns the count, -1 with a message on a malformed list. */
int64_t r1_cli_parse_ids(const char *text, int32_t **ids_out);
/* Parses a non-negative integer option value; -1 with a message when malformed. */
int64_t r1_cli_parse_count(const char *opt, const char *text);
/* Parses an integer option value in [min, max] into *out: 0, or -1 with a message naming the
 * option and the range (never a silent wrap, as a cast to int32_t would do). */
int r1_cli_parse_int(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out);
/* The same for the whole uint64_t range (seeds). */
int r1_cli_parse_u64(const char *opt, const char *text, uint64_t *out);
/* The bytes of a file ("-": standard input), NUL-terminated, malloc'ed; *len excludes the NUL.
 * NULL with a message on failure. */
char *r1_cli_read_all(const char *path, size_t *len);

#include "r1.h"

/* The model the subcommands use when no -m is given: $R1_MODEL, else the installed tiny-r1,
 * else the one in the source tree this program was built from. */
const char *r1_cli_default_model(void);
/* Loads path (or the default model) with n_threads (0: one per core), backend (NULL: cpu) and
 * its device (an index or part of a name; NULL: the default); prints the reason and returns
 * NULL on failure. */
r1_model *r1_cli_load_model(const char *path, int32_t n_threads, const char *backend,
                            const char *device);

#endif
