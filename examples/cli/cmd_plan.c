/* cmd_plan.c: `r1 plan`: what a model needs in memory and how fast it should decode, unloaded. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_memory.h"
#include "commands.h"
#include "r1.h"

void r1_cmd_plan_usage(FILE *to)
{
    fprintf(to,
            "usage: r1 plan -m MODEL [--ram BYTES] [--ctx N] [--mem-bw GB/s] [--drive-bw GB/s]\n"
            "               [--json]\n\n"
            "Reads only the model's header and index (not its weights) and prints its dense,\n"
            "expert and KV-cache bytes, the expert budget that `--expert-ram auto` would choose\n"
            "with --ram of memory, whether the model fits, and the decode speed to expect from\n"
            "the memory and drive bandwidths (assuming uniform routing, the worst case for the\n"
            "expert cache). Bandwidths not given are measured: a short triad on every core and\n"
            "direct reads of the model file (about 2 s in all).\n\n"
            "  -m, --model PATH   the .r1m model\n"
            "  --ram BYTES        memory to plan for, e.g. 64G (default: MemAvailable now)\n"
            "  --ctx N            context to leave KV-cache room for (default: 4096, or the\n"
            "                     model's maximum if less)\n"
            "  --mem-bw GB/s      memory bandwidth in 10^9 bytes per second\n"
            "  --drive-bw GB/s    drive bandwidth in 10^9 bytes per second\n"
            "  --json             one JSON object instead of the text\n");
}

static int r1_plan_gbps(const char *opt, const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d <= 0 || d > 1e6) {
        fprintf(stderr, "r1 plan: %s takes a positive number of GB/s, not '%s'\n", opt, v);
        return -1;
    }
    *out = d * 1e9;
    return 0;
}

static const char *r1_plan_fit_name(int32_t fits)
{
    return fits == R1_PLAN_IN_MEMORY ? "in memory"
           : fits == R1_PLAN_STREAMS ? "streams experts from the drive"
                                     : "does not fit";
}

/* bytes in the largest binary unit that keeps a digit before the point, in one of four
 * rotating buffers (a printf takes several). */
static const char *r1_plan_size(double bytes)
{
    static char buf[4][32];
    static int next;
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
    return b;
}

int r1_cmd_plan(int argc, char **argv)
{
    const char *model_path = NULL;
    uint64_t ram = 0;
    int64_t ctx = 0;
    double mem_bw = 0, drive_bw = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (strcmp(a, "-m") && strcmp(a, "--model") && strcmp(a, "--ram") && strcmp(a, "--ctx") &&
            strcmp(a, "--mem-bw") && strcmp(a, "--drive-bw")) {
            fprintf(stderr, "r1 plan: unknown option '%s'\n\n", a);
            r1_cmd_plan_usage(stderr);
            return 2;
        }
        if (!(v = r1_cli_value(argc, argv, &i)))
            return 2;
        int32_t is_auto = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "--ram")) {
            if (r1_cli_parse_bytes(a, v, &ram, &is_auto) != 0)
                return 2; /* auto, like 0, is MemAvailable */
        } else if (!strcmp(a, "--ctx")) {
            if (r1_cli_parse_int(a, v, 1, INT32_MAX, &ctx) != 0)
                return 2;
        } else if (r1_plan_gbps(a, v, !strcmp(a, "--mem-bw") ? &mem_bw : &drive_bw) != 0)
            return 2;
    }
    if (model_path == NULL)
        model_path = r1_cli_default_model();
    r1_plan p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    if (r1_model_plan(model_path, ram, (int32_t)ctx, mem_bw, drive_bw, &p) != R1_OK) {
        fprintf(stderr, "r1 plan: %s: %s\n", model_path, r1_last_error());
        return 1;
    }
    if (json) {
        printf("{\"model\": \"%s\", \"fits\": \"%s\", \"file_bytes\": %llu, "
               "\"dense_bytes\": %llu, \"expert_bytes\": %llu, \"expert_stored_bytes\": %llu, "
               "\"expert_bytes_per_token\": %llu, \"kv_bytes_per_token\": %llu, "
               "\"context\": %lld, \"ram_bytes\": %llu, \"headroom_bytes\": %llu, "
               "\"min_expert_budget_bytes\": %llu, \"expert_budget_bytes\": %llu, "
               "\"hit_rate\": %.4f, \"memory_bytes_per_token\": %llu, "
               "\"drive_bytes_per_token\": %llu, \"mem_bytes_per_s\": %.0f, "
               "\"drive_bytes_per_s\": %.0f, \"memory_tokens_per_s\": %.3f, "
               "\"drive_tokens_per_s\": %.3f, \"decode_tokens_per_s\": %.3f}\n",
               model_path, r1_plan_fit_name(p.fits), (unsigned long long)p.file_bytes,
               (unsigned long long)p.dense_bytes, (unsigned long long)p.expert_bytes,
               (unsigned long long)p.expert_stored_bytes,
               (unsigned long long)p.expert_bytes_per_token,
               (unsigned long long)p.kv_bytes_per_token, (long long)p.context,
               (unsigned long long)p.ram_bytes, (unsigned long long)p.headroom_bytes,
               (unsigned long long)p.min_expert_budget_bytes,
               (unsigned long long)p.expert_budget_bytes, p.hit_rate,
               (unsigned long long)p.memory_bytes_per_token,
               (unsigned long long)p.drive_bytes_per_token, p.mem_bytes_per_s, p.drive_bytes_per_s,
               p.memory_tokens_per_s, p.drive_tokens_per_s, p.decode_tokens_per_s);
        return 0;
    }
    printf("model:            %s (%s file)\n", model_path, r1_plan_size((double)p.file_bytes));
    printf("dense weights:    %s\n", r1_plan_size((double)p.dense_bytes));
    printf("routed experts:   %s in memory (%s stored), %s per token\n",
           r1_plan_size((double)p.expert_bytes), r1_plan_size((double)p.expert_stored_bytes),
           r1_plan_size((double)p.expert_bytes_per_token));
    printf("KV cache:         %s per token, %s for %lld tokens\n",
           r1_plan_size((double)p.kv_bytes_per_token),
           r1_plan_size((double)p.kv_bytes_per_token * (double)p.context), (long long)p.context);
    printf("memory:           %s planned for, %s kept free as headroom\n",
           r1_plan_size((double)p.ram_bytes), r1_plan_size((double)p.headroom_bytes));
    printf("expert budget:    %s (minimum %s), %.0f %% of the experts\n",
           r1_plan_size((double)p.expert_budget_bytes),
           r1_plan_size((double)p.min_expert_budget_bytes), 100.0 * p.hit_rate);
    printf("fits:             %s\n", r1_plan_fit_name(p.fits));
    printf("bandwidth:        memory %.1f GB/s%s, drive %.2f GB/s%s\n", p.mem_bytes_per_s / 1e9,
           mem_bw > 0 ? "" : " (measured)", p.drive_bytes_per_s / 1e9,
           drive_bw > 0                  ? ""
           : p.drive_bytes_per_token > 0 ? " (measured)"
                                         : " (not needed)");
    printf("per token:        %s from memory, %s from the drive (uniform routing)\n",
           r1_plan_size((double)p.memory_bytes_per_token),
           r1_plan_size((double)p.drive_bytes_per_token));
    printf("decode:           %.2f tokens/s expected (memory bound %.2f", p.decode_tokens_per_s,
           p.memory_tokens_per_s);
    if (p.drive_bytes_per_token > 0)
        printf(", drive bound %.2f", p.drive_tokens_per_s);
    printf(")\n");
    return p.fits == R1_PLAN_NO_FIT ? 1 : 0;
}
