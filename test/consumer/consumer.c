/* consumer.c: a program built outside the tree against the installed libr1 via pkg-config. */
#include <r1.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (r1_version_number() != R1_VERSION_NUMBER) {
        fprintf(stderr, "header %d vs library %u\n", R1_VERSION_NUMBER, r1_version_number());
        return 1;
    }
    if (!r1_backend_available("cpu")) {
        fprintf(stderr, "cpu backend unavailable: %s\n", r1_last_error());
        return 1;
    }
    printf("consumer ok: libr1 %s, %d backend(s)\n", r1_version_string(), r1_backend_count());
    return 0;
}
