/* cmd_tokenize.c: `r1 tokenize`: the ids of a text as a JSON array. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"
#include "r1.h"

void r1_cmd_tokenize_usage(FILE *to)
{
    fprintf(to, "usage: r1 tokenize [-m MODEL] [--bos] [--special] (-f FILE | TEXT)\n\n"
                "Prints the token ids of TEXT (or of FILE's bytes) as a JSON array.\n\n"
                "  -m, --model PATH  the .r1m model (default: the built-in tiny-r1)\n"
                "  --bos             prepend the beginning-of-sentence token\n"
                "  --special         recognise special tokens written in the text\n"
                "  -f, --file PATH   read the text from a file (-: standard input)\n");
}

int r1_cmd_tokenize(int argc, char **argv)
{
    const char *model_path = NULL, *file = NULL, *text = NULL;
    uint32_t flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(file = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--bos")) {
            flags |= R1_TOKENIZE_ADD_BOS;
        } else if (!strcmp(a, "--special")) {
            flags |= R1_TOKENIZE_PARSE_SPECIAL;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "r1 tokenize: unknown option '%s'\n\n", a);
            r1_cmd_tokenize_usage(stderr);
            return 2;
        } else if (text == NULL) {
            text = a;
        } else {
            r1_cmd_tokenize_usage(stderr);
            return 2;
        }
    }
    if ((file == NULL) == (text == NULL)) {
        r1_cmd_tokenize_usage(stderr);
        return 2;
    }
    size_t len = 0;
    char *owned = NULL;
    if (file != NULL) {
        if ((owned = r1_cli_read_all(file, &len)) == NULL)
            return 1;
        text = owned;
    } else {
        len = strlen(text);
    }
    r1_model *model = r1_cli_load_model(model_path, 0, NULL, NULL);
    int rc = 1;
    int32_t *ids = NULL;
    size_t n = 0;
    if (model != NULL) {
        r1_status st = r1_tokenize(model, text, len, flags, NULL, 0, &n);
        if ((st == R1_OK || st == R1_ERR_BUFFER_TOO_SMALL) &&
            (ids = malloc((n ? n : 1) * sizeof *ids)) != NULL)
            st = r1_tokenize(model, text, len, flags, ids, n, &n);
        if (st != R1_OK) {
            fprintf(stderr, "r1 tokenize: %s\n", r1_last_error());
        } else {
            putchar('[');
            for (size_t i = 0; i < n; i++)
                printf(i ? ", %d" : "%d", ids[i]);
            puts("]");
            rc = 0;
        }
    }
    free(ids);
    r1_model_destroy(model);
    free(owned);
    return rc;
}
