/* r1.c: the `r1` command-line program: one subcommand per task, each a thin user of r1.h. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_gen.h"
#include "commands.h"
#include "r1.h"

typedef struct r1_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *to);
} r1_command;

static void usage_version(FILE *to)
{
    fprintf(to, "usage: r1 version (or r1 --version)\n\n"
                "Prints the version of this program and of the libr1 it loaded.\n");
}

static int print_version(void)
{
    printf("r1 %d.%d.%d (command-line program), libr1 %s (loaded library)\n", R1_VERSION_MAJOR,
           R1_VERSION_MINOR, R1_VERSION_PATCH, r1_version_string());
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        usage_version(stderr);
        return 2;
    }
    return print_version();
}

static void usage_backends(FILE *to)
{
    fprintf(to, "usage: r1 backends\n\n"
                "Lists the compute backends built into libr1, whether each can run here,\n"
                "and its devices: a GPU, or a software implementation on the CPU.\n");
}

static int cmd_backends(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        usage_backends(stderr);
        return 2;
    }
    for (int32_t i = 0; i < r1_backend_count(); i++) {
        const char *name = r1_backend_name(i);
        char what[1024];
        size_t len;
        /* the devices, so a software Vulkan device (lavapipe) does not pass for a GPU */
        r1_status st = r1_backend_describe(name, what, sizeof what, &len);
        if (st == R1_OK || st == R1_ERR_BUFFER_TOO_SMALL)
            printf("%-8s available: %s\n", name, st == R1_OK ? what : "(description too long)");
        else
            printf("%-8s unavailable: %s\n", name, r1_last_error());
    }
    return 0;
}

static void usage_convert(FILE *to)
{
    fprintf(to, "usage: r1 convert HF_DIR OUT.r1m [--quant RULES] [--threads N] [--no-shuffle]\n\n"
                "Converts a Hugging Face DeepSeek-V3/R1, V2/V2-Lite or R1-Distill (Qwen2,\n"
                "Llama-3) checkpoint into an .r1m model file.\n\n"
                "  --quant RULES  one type for every eligible weight, or a list such as\n"
                "                 experts=q4_0,attn=q8_0,dense=q8_0,shared=q8_0,head=q8_0\n"
                "                 (classes: experts shared attn dense head; types: q8_0 q4_0\n"
                "                 bf16 f16 f32 keep). Default: keep every weight's type.\n"
                "  --threads N    compression threads (default 1)\n"
                "  --no-shuffle   no byte/nibble-plane filter: store every expert raw\n");
}

/* Also how Ctrl-C reaches the converter: a non-zero return cancels it, and it then removes its
 * temporary file, which dying on the signal would leave behind. */
static int32_t convert_progress(uint64_t done, uint64_t total, void *user_data)
{
    if (*(const int *)user_data) {
        int pct = total ? (int)(done * 100 / total) : 100, filled = pct / 4;
        fprintf(stderr, "\r[%.*s%*s] %3d%%", filled, "#########################", 25 - filled, "",
                pct);
    }
    return r1_cli_interrupted != 0;
}

static int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *quant = NULL;
    int threads = 1;
    uint32_t flags = 0;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--quant") == 0) {
            if (!(quant = r1_cli_value(argc, argv, &a)))
                return 2;
        } else if (strcmp(argv[a], "--threads") == 0) {
            const char *v = r1_cli_value(argc, argv, &a);
            int64_t n;
            if (v == NULL || r1_cli_parse_int(argv[a - 1], v, 1, 64, &n) != 0)
                return 2;
            threads = (int)n;
        } else if (argv[a][0] == '-' && argv[a][1] == '-' && strcmp(argv[a], "--no-shuffle")) {
            fprintf(stderr, "r1 convert: unknown option '%s'\n\n", argv[a]);
            usage_convert(stderr);
            return 2;
        } else if (strcmp(argv[a], "--no-shuffle") == 0) {
            flags |= R1_CONVERT_NO_SHUFFLE;
        } else if (argv[a][0] == '-' || (in && out)) {
            usage_convert(stderr);
            return 2;
        } else if (in == NULL) {
            in = argv[a];
        } else {
            out = argv[a];
        }
    }
    if (in == NULL || out == NULL) {
        usage_convert(stderr);
        return 2;
    }
    int tty = isatty(2);
    r1_cli_catch_interrupts(1);
    r1_status st = r1_convert(in, out, quant, threads, flags, convert_progress, &tty);
    if (tty)
        fprintf(stderr, "\n");
    if (st != R1_OK) {
        fprintf(stderr, "r1 convert: %s: %s\n", r1_status_name(st), r1_last_error());
        return r1_cli_last_signal ? 128 + r1_cli_last_signal : 1;
    }
    return 0;
}

static const r1_command r1_commands[] = {
    {"run", "answer one prompt, streaming the reasoning and the answer", r1_cmd_run,
     r1_cmd_run_usage},
    {"chat", "an interactive conversation", r1_cmd_chat, r1_cmd_chat_usage},
    {"tokenize", "print the token ids of a text as JSON", r1_cmd_tokenize, r1_cmd_tokenize_usage},
    {"version", "print the library version", cmd_version, usage_version},
    {"backends", "list compute backends and whether each can run here", cmd_backends,
     usage_backends},
    {"convert", "convert a Hugging Face checkpoint into an .r1m model file", cmd_convert,
     usage_convert},
    {"eval", "write the logits of every position of a token list", r1_cmd_eval, r1_cmd_eval_usage},
    {"bench", "prompt and generation speed against the memory-bandwidth floor", r1_cmd_bench,
     r1_cmd_bench_usage},
    {"plan", "memory a model needs and its expected decode speed, without loading it", r1_cmd_plan,
     r1_cmd_plan_usage},
};
enum { R1_N_COMMANDS = sizeof r1_commands / sizeof r1_commands[0] };

static void usage(FILE *to)
{
    fprintf(to, "usage: r1 <command> [options]\n\ncommands:\n");
    for (int i = 0; i < R1_N_COMMANDS; i++)
        fprintf(to, "  %-10s %s\n", r1_commands[i].name, r1_commands[i].summary);
    fprintf(to, "\n`r1 <command> --help` describes one command; `r1 --version` prints the\n"
                "versions of this program and of libr1.\n");
}

/* OpenBLAS chooses its kernels once, when it is loaded, from the CPU model number. On CPUs newer
 * than it knows (and in virtual machines that report a generic model) it falls back to its SSE3
 * "Prescott" kernels, which run prefill's sgemm 4-5x slower than its AVX-512 ones on the same
 * CPU. Only OPENBLAS_CORETYPE, read before main(), changes that choice, so on an AVX-512 CPU the
 * program restarts itself once with it set. Any other case, or a failed exec, goes on as is. */
static void r1_cli_choose_blas_kernels(char **argv)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE") != NULL)
        return;
    const char *(*corename)(void) = NULL;
    *(void **)&corename = dlsym(RTLD_DEFAULT, "openblas_get_corename");
    if (corename == NULL)
        return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl"))
        return;
    const char *name = corename();
    if (name == NULL || strcasecmp(name, "skylakex") == 0 || strcasecmp(name, "cooperlake") == 0 ||
        strcasecmp(name, "sapphirerapids") == 0)
        return;
    if (setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) == 0)
        execv("/proc/self/exe", argv);
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    r1_cli_choose_blas_kernels(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
        return argc == 2 ? print_version() : (usage_version(stderr), 2);
    for (int i = 0; i < R1_N_COMMANDS; i++) {
        if (strcmp(argv[1], r1_commands[i].name) != 0)
            continue;
        for (int a = 2; a < argc; a++)
            if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
                r1_commands[i].usage(stdout);
                return 0;
            }
        return r1_commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "r1: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
