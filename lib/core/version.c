/* version.c: the version of the loaded library. */
#include "r1.h"

#define R1_STR2(x) #x
#define R1_STR(x)  R1_STR2(x)

R1_API uint32_t r1_version_number(void)
{
    return (uint32_t)R1_VERSION_NUMBER;
}

R1_API const char *r1_version_string(void)
{
    return R1_STR(R1_VERSION_MAJOR) "." R1_STR(R1_VERSION_MINOR) "." R1_STR(R1_VERSION_PATCH);
}
