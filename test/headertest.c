/* headertest.c: r1.h compiles on its own as strict C99 (and, as headertest.cpp, as C++). */
#include "r1.h"
#include "r1.h" /* include guard */

int main(void)
{
    r1_status st = R1_OK;
    r1_model *model = 0;
    r1_session *session = 0;
    r1_sampler *sampler = 0;
    r1_backend *backend = 0;
    (void)model, (void)session, (void)sampler, (void)backend;
    return (int)st + (r1_version_number() == R1_VERSION_NUMBER ? 0 : 1);
}
