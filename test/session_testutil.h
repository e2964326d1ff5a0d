/* session_testutil.h: the logits of a token sequence through the public session API, shared by
 * the suites that compare a model's outputs (test_forward against goldens, test_vulkan against
 * the CPU backend). Check assertions: call from a test (or a thread it joins). */
#ifndef R1_SESSION_TESTUTIL_H
#define R1_SESSION_TESTUTIL_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "r1.h"

/* Logits of every position (n x *vocab, malloc'd): prefill in one call (decode = 0) or one token
 * per call, the position checked after each. */
static inline float *tu_logits(r1_model *m, const int32_t *ids, int n, int decode, size_t *vocab)
{
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, 64), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_logits_all(so, 1), R1_OK);
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
    r1_session_opts_destroy(so);
    float *out = NULL;
    const float *row;
    for (int t = 0; t < n; t += decode ? 1 : n) {
        const int len = decode ? 1 : n;
        ck_assert_msg(r1_session_eval(s, ids + t, (size_t)len) == R1_OK, "%s", r1_last_error());
        ck_assert_int_eq(r1_session_position(s), t + len);
        for (int k = 0; k < len; k++) {
            ck_assert_int_eq(r1_session_logits(s, decode ? -1 : k, &row, vocab), R1_OK);
            if (out == NULL)
                out = malloc((size_t)n * *vocab * sizeof(float));
            memcpy(out + (size_t)(t + k) * *vocab, row, *vocab * sizeof(float));
        }
    }
    r1_session_destroy(s);
    return out;
}

#endif
