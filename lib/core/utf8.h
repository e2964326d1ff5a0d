/* utf8.h: strict UTF-8 validation (RFC 3629: no overlongs, surrogates or code points past
 * U+10FFFF) (internal). */
#ifndef R1_UTF8_H
#define R1_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 prefix of s[0..n): n when all of it is valid. */
size_t r1_utf8__valid_prefix(const unsigned char *s, size_t n);

#endif
