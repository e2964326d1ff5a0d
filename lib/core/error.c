/* error.c: per-thread failure messages and the names of the status codes. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Long enough for a path plus a sentence; longer messages are truncated, never overflowed. */
enum { R1_ERROR_MESSAGE_BYTES = 1024 };

static _Thread_local char r1_error_message[R1_ERROR_MESSAGE_BYTES];

r1_status r1_error__set(r1_status st, const char *fmt, ...)
{
    /* Callers may quote the current message to add context ("...: %s", r1_error__message()),
     * so format into a copy first: vsnprintf into a buffer that is also one of its arguments is
     * undefined and garbles the message. */
    char msg[R1_ERROR_MESSAGE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(r1_error_message, msg, sizeof msg);
    return st;
}

void r1_error__clear(void)
{
    r1_error_message[0] = '\0';
}

const char *r1_error__message(void)
{
    return r1_error_message;
}

R1_API const char *r1_last_error(void)
{
    return r1_error_message;
}

R1_API const char *r1_status_name(r1_status st)
{
    switch (st) {
    case R1_OK: return "R1_OK";
    case R1_DONE: return "R1_DONE";
    case R1_CANCELLED: return "R1_CANCELLED";
    case R1_ERR_INVALID_ARG: return "R1_ERR_INVALID_ARG";
    case R1_ERR_NO_MEMORY: return "R1_ERR_NO_MEMORY";
    case R1_ERR_IO: return "R1_ERR_IO";
    case R1_ERR_FORMAT: return "R1_ERR_FORMAT";
    case R1_ERR_CHECKSUM: return "R1_ERR_CHECKSUM";
    case R1_ERR_UNSUPPORTED: return "R1_ERR_UNSUPPORTED";
    case R1_ERR_NOT_FOUND: return "R1_ERR_NOT_FOUND";
    case R1_ERR_BUFFER_TOO_SMALL: return "R1_ERR_BUFFER_TOO_SMALL";
    case R1_ERR_OUT_OF_RANGE: return "R1_ERR_OUT_OF_RANGE";
    case R1_ERR_CONTEXT_FULL: return "R1_ERR_CONTEXT_FULL";
    case R1_ERR_BAD_STATE: return "R1_ERR_BAD_STATE";
    case R1_ERR_INVALID_UTF8: return "R1_ERR_INVALID_UTF8";
    case R1_ERR_BACKEND: return "R1_ERR_BACKEND";
    case R1_ERR_BUDGET: return "R1_ERR_BUDGET";
    case R1_ERR_INTERNAL: return "R1_ERR_INTERNAL";
    default: return "R1_UNKNOWN_STATUS";
    }
}
