/* r1.c: the `r1` command-line program: one subcommand per task, each a thin user of r1.h. */
#include <stdio.h>
#include <string.h>

#include "r1.h"

typedef struct r1_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *to);
} r1_command;

static void usage_version(FILE *to)
{
    fprintf(to, "usage: r1 version\n\nPrints the version of the loaded libr1.\n");
}

static int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        usage_version(stderr);
        return 2;
    }
    printf("r1 %s (header %d.%d.%d)\n", r1_version_string(), R1_VERSION_MAJOR, R1_VERSION_MINOR,
           R1_VERSION_PATCH);
    return 0;
}

static void usage_backends(FILE *to)
{
    fprintf(to, "usage: r1 backends\n\n"
                "Lists the compute backends built into libr1 and whether each can run here.\n");
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
        int32_t ok = r1_backend_available(name);
        printf("%-8s %s%s%s\n", name, ok ? "available" : "unavailable", ok ? "" : ": ",
               ok ? "" : r1_last_error());
    }
    return 0;
}

static const r1_command r1_commands[] = {
    {"version", "print the library version", cmd_version, usage_version},
    {"backends", "list compute backends and whether each can run here", cmd_backends,
     usage_backends},
};
enum { R1_N_COMMANDS = sizeof r1_commands / sizeof r1_commands[0] };

static void usage(FILE *to)
{
    fprintf(to, "usage: r1 <command> [options]\n\ncommands:\n");
    for (int i = 0; i < R1_N_COMMANDS; i++)
        fprintf(to, "  %-10s %s\n", r1_commands[i].name, r1_commands[i].summary);
    fprintf(to, "\n`r1 <command> --help` describes one command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
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
