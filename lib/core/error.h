/* error.h: the per-thread last-error message behind r1_last_error() (internal). */
#ifndef R1_ERROR_H
#define R1_ERROR_H

#include "r1.h"

/* Record a failure for the calling thread and return st, so callers can write
 * `return r1_error__set(R1_ERR_IO, "cannot open '%s': %s", path, strerror(errno));`.
 * An argument may be r1_error__message() itself, to put context before the current message. */
r1_status r1_error__set(r1_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forget the calling thread's message. Every public entry point calls this first, which is what
 * makes a message live "until this thread's next r1 call". */
void r1_error__clear(void);

/* The calling thread's message ("" when none). */
const char *r1_error__message(void);

#endif
