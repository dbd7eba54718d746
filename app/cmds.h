/* app/cmds.h — the subcommands of the truthgpt executable. Each takes the arguments after
 * the subcommand name (argv[0] is the subcommand) and returns the process exit code:
 * 0 ok, 1 failure, 2 usage error (usage printed). Only main() exits. */
#ifndef TG_CMDS_H
#define TG_CMDS_H

int tg_cmd_train(int argc, char **argv);       /* app/cmd_train.c */
int tg_cmd_prepare(int argc, char **argv);     /* app/cmd_data.c */
int tg_cmd_tokenizer(int argc, char **argv);   /* app/cmd_data.c */
int tg_cmd_bench(int argc, char **argv);       /* app/cmd_bench.c: dispatches model|data|comm */
int tg_cmd_bench_data(int argc, char **argv);  /* app/cmd_data.c */
int tg_cmd_bench_comm(int argc, char **argv);  /* app/cmd_bench_comm.c */
int tg_cmd_bench_model(int argc, char **argv); /* app/cmd_bench.c */
int tg_cmd_bench_ckpt(int argc, char **argv);  /* app/cmd_bench_ckpt.c */
int tg_cmd_ckpt(int argc, char **argv);        /* app/cmd_ckpt.c */
int tg_cmd_sample(int argc, char **argv);      /* app/cmd_sample.c */
int tg_cmd_eval(int argc, char **argv);        /* app/cmd_eval.c */
int tg_cmd_data(int argc, char **argv);        /* app/cmd_data_verify.c: `data verify GLOB...` */
int tg_cmd_ckpt_diff(int argc, char **argv);   /* app/cmd_ckpt_diff.c: `ckpt diff A B` */
int tg_cmd_export(int argc, char **argv);      /* app/cmd_interop.c */
int tg_cmd_import(int argc, char **argv);      /* app/cmd_interop.c */
int tg_cmd_tokenizer_import(int argc, char **argv); /* app/cmd_interop.c: `tokenizer import` */

#endif
