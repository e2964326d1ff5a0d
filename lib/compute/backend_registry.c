/* backend_registry.c: the list of built-in backends and their cached availability probes. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "builtin_backends.h"
#include "error.h"

enum { R1_N_BUILTIN = (int)(sizeof r1_builtin_backends / sizeof r1_builtin_backends[0]) };

/* Probing a GPU backend loads its driver, which is slow and may print nothing useful twice:
 * the answer is computed once per process. */
static struct {
    int32_t done;
    int32_t devices;
    char why[512]; /* the reason when unusable, else what the devices are (may be "") */
} r1_probe_cache[R1_N_BUILTIN];
static pthread_mutex_t r1_probe_lock = PTHREAD_MUTEX_INITIALIZER;

int32_t r1_backend_registry__count(void)
{
    return R1_N_BUILTIN;
}

const r1_backend_ops *r1_backend_registry__at(int32_t index)
{
    if (index < 0 || index >= R1_N_BUILTIN)
        return NULL;
    const r1_backend_ops *ops = r1_builtin_backends[index]();
    if (ops == NULL || ops->abi != R1_BACKEND_ABI)
        return NULL;
    return ops;
}

static int32_t r1_registry_index(const char *name)
{
    for (int32_t i = 0; i < R1_N_BUILTIN; i++) {
        const r1_backend_ops *ops = r1_backend_registry__at(i);
        if (ops != NULL && strcmp(ops->name, name) == 0)
            return i;
    }
    return -1;
}

const r1_backend_ops *r1_backend_registry__find(const char *name)
{
    if (name == NULL) {
        r1_error__set(R1_ERR_INVALID_ARG, "backend name is NULL");
        return NULL;
    }
    int32_t i = r1_registry_index(name);
    if (i < 0) {
        r1_error__set(R1_ERR_NOT_FOUND, "no backend named '%s' is built into this libr1", name);
        return NULL;
    }
    return r1_backend_registry__at(i);
}

int32_t r1_backend_registry__probe(const r1_backend_ops *ops)
{
    int32_t i = r1_registry_index(ops->name);
    if (i < 0)
        return 0;
    pthread_mutex_lock(&r1_probe_lock);
    if (!r1_probe_cache[i].done) {
        r1_probe_cache[i].why[0] = '\0';
        r1_probe_cache[i].devices = ops->probe(r1_probe_cache[i].why, sizeof r1_probe_cache[i].why);
        r1_probe_cache[i].done = 1;
    }
    int32_t devices = r1_probe_cache[i].devices;
    if (devices <= 0)
        r1_error__set(R1_ERR_UNSUPPORTED, "backend '%s' is unusable here: %s", ops->name,
                      r1_probe_cache[i].why[0] ? r1_probe_cache[i].why : "no device");
    pthread_mutex_unlock(&r1_probe_lock);
    return devices > 0 ? devices : 0;
}

R1_API int32_t r1_backend_count(void)
{
    r1_error__clear();
    return R1_N_BUILTIN;
}

R1_API const char *r1_backend_name(int32_t index)
{
    r1_error__clear();
    const r1_backend_ops *ops = r1_backend_registry__at(index);
    if (ops == NULL) {
        r1_error__set(R1_ERR_OUT_OF_RANGE, "backend index %d is outside 0..%d", (int)index,
                      R1_N_BUILTIN - 1);
        return NULL;
    }
    return ops->name;
}

R1_API int32_t r1_backend_available(const char *name)
{
    r1_error__clear();
    const r1_backend_ops *ops = r1_backend_registry__find(name);
    if (ops == NULL)
        return 0;
    return r1_backend_registry__probe(ops) > 0 ? 1 : 0;
}

R1_API r1_status r1_backend_describe(const char *name, char *buf, size_t cap, size_t *len_out)
{
    r1_error__clear();
    if (len_out == NULL || (buf == NULL && cap > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "len_out is NULL, or buf is NULL with cap > 0");
    *len_out = 0;
    const r1_backend_ops *ops = r1_backend_registry__find(name);
    if (ops == NULL)
        return name == NULL ? R1_ERR_INVALID_ARG : R1_ERR_NOT_FOUND;
    int32_t devices = r1_backend_registry__probe(ops);
    if (devices <= 0)
        return R1_ERR_UNSUPPORTED; /* the probe's reason is the message */
    char text[sizeof r1_probe_cache[0].why];
    pthread_mutex_lock(&r1_probe_lock);
    snprintf(text, sizeof text, "%s", r1_probe_cache[r1_registry_index(ops->name)].why);
    pthread_mutex_unlock(&r1_probe_lock);
    if (text[0] == '\0') /* a backend that does not describe its devices */
        snprintf(text, sizeof text, "%d device%s", (int)devices, devices == 1 ? "" : "s");
    size_t len = strlen(text);
    *len_out = len;
    if (cap < len + 1)
        return r1_error__set(R1_ERR_BUFFER_TOO_SMALL, "the description needs %zu bytes", len + 1);
    memcpy(buf, text, len + 1);
    return R1_OK;
}
