/* cli_memory.c: --expert-ram and --device-expert-ram BYTES|auto (auto by default), --expert-policy.
 */
#include "cli_memory.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"

r1_cli_memory r1_cli_mem = {.expert_auto = 1, .device_auto = 1, .policy = -1};

int r1_cli_parse_bytes(const char *opt, const char *text, uint64_t *out, int32_t *is_auto)
{
    *is_auto = 0;
    if (!strcmp(text, "auto")) {
        *is_auto = 1;
        *out = 0;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    double unit = 1.0;
    const char *suffix = end;
    switch (*suffix) {
    case 'k':
    case 'K': unit = 1024.0; break;
    case 'm':
    case 'M': unit = 1024.0 * 1024.0; break;
    case 'g':
    case 'G': unit = 1024.0 * 1024.0 * 1024.0; break;
    case 't':
    case 'T': unit = 1024.0 * 1024.0 * 1024.0 * 1024.0; break;
    default: break;
    }
    if (unit > 1.0)
        suffix++;
    if (!strcmp(suffix, "iB") && unit > 1.0)
        suffix += 2;
    else if (!strcmp(suffix, "B"))
        suffix++;
    /* strtod also takes "inf", "nan" and hex: only plain decimal digits are a byte count */
    int plain = text[0] >= '0' && text[0] <= '9';
    for (const char *p = text; p < end && plain; p++)
        plain = (*p >= '0' && *p <= '9') || *p == '.';
    double bytes = v * unit;
    if (errno != 0 || end == text || !plain || *suffix != '\0' || !(bytes >= 0.0) ||
        bytes >= 18446744073709551616.0) {
        fprintf(stderr,
                "r1: %s takes auto or a number of bytes with an optional suffix K, M, G or T "
                "(e.g. 4G, 512M), not '%s'\n",
                opt, text);
        return -1;
    }
    *out = (uint64_t)floor(bytes);
    return 0;
}

int r1_cli_memory_option(int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    int expert = !strcmp(a, "--expert-ram"), device = !strcmp(a, "--device-expert-ram");
    int policy = !strcmp(a, "--expert-policy");
    if (!expert && !device && !policy)
        return 0;
    const char *v = r1_cli_value(argc, argv, i);
    if (v == NULL)
        return -1;
    if (policy) {
        if (strcmp(v, "default") && strcmp(v, "lru")) {
            fprintf(stderr, "r1: --expert-policy takes default or lru, not '%s'\n", v);
            return -1;
        }
        r1_cli_mem.policy = strcmp(v, "lru") ? R1_CACHE_POLICY_DEFAULT : R1_CACHE_POLICY_LRU;
        return 1;
    }
    uint64_t bytes;
    int32_t is_auto;
    if (r1_cli_parse_bytes(a, v, &bytes, &is_auto) != 0)
        return -1;
    if (expert) {
        r1_cli_mem.expert_auto = is_auto;
        r1_cli_mem.expert_bytes = bytes;
    } else {
        r1_cli_mem.device_auto = is_auto;
        r1_cli_mem.device_bytes = bytes;
    }
    return 1;
}

r1_status r1_cli_memory_apply(r1_model_opts *o)
{
    r1_status st = r1_cli_mem.expert_auto
                       ? r1_model_opts_set_expert_cache_auto(o, r1_cli_mem.context)
                       : r1_model_opts_set_expert_cache_bytes(o, r1_cli_mem.expert_bytes);
    /* the device cache's 0 is "bounded by the device's memory": what auto means there */
    if (st == R1_OK)
        st = r1_model_opts_set_device_expert_cache_bytes(
            o, r1_cli_mem.device_auto ? 0 : r1_cli_mem.device_bytes);
    if (st == R1_OK && r1_cli_mem.policy >= 0)
        st = r1_model_opts_set_expert_cache_policy(o, r1_cli_mem.policy);
    if (st != R1_OK)
        fprintf(stderr, "r1: %s\n", r1_last_error());
    return st;
}

void r1_cli_memory_usage(FILE *to)
{
    fprintf(to,
            "  --expert-ram B|auto   memory for routed experts, e.g. 24G, 512M (0: unbounded);\n"
            "                        auto (default): what is available at load minus dense\n"
            "                        weights, KV cache and headroom (see r1 plan)\n"
            "  --device-expert-ram B|auto\n"
            "                        device memory for routed experts on a GPU backend;\n"
            "                        auto (default): bounded by the device's memory\n"
            "  --expert-policy P     which expert a full cache drops: default (decayed use\n"
            "                        counts and layer order) or lru\n");
}
