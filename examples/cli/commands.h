/* commands.h: the subcommands of the r1 program, one file each. */
#ifndef R1_CLI_COMMANDS_H
#define R1_CLI_COMMANDS_H

#include <stdio.h>

int r1_cmd_bench(int argc, char **argv);
void r1_cmd_bench_usage(FILE *to);
int r1_cmd_eval(int argc, char **argv);
void r1_cmd_eval_usage(FILE *to);
int r1_cmd_plan(int argc, char **argv);
void r1_cmd_plan_usage(FILE *to);

int r1_cmd_run(int argc, char **argv);
void r1_cmd_run_usage(FILE *to);
int r1_cmd_chat(int argc, char **argv);
void r1_cmd_chat_usage(FILE *to);
int r1_cmd_tokenize(int argc, char **argv);
void r1_cmd_tokenize_usage(FILE *to);

#endif
