/* app/cmd_ckpt.c — `truthgpt ckpt info|latest` (and `ckpt diff`, in cmd_ckpt_diff.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "app/cmds.h"
#include "ckpt/ckpt.h"
#include "core/log.h"

static void ckpt_usage(void) {
    fprintf(stderr,
            "usage: truthgpt ckpt info [--no-config] [--checksums] FILE\n"
            "           print what a checkpoint holds (step, config, tensors, sizes) and verify\n"
            "           every dataset's checksum; exit 1 if any is bad\n"
            "       truthgpt ckpt latest DIR\n"
            "           print the newest checkpoint in DIR that verifies (what train.resume=auto\n"
            "           would pick); exit 1 if there is none\n"
            "       truthgpt ckpt diff A.h5 B.h5 [--tol X]\n"
            "           compare the parameters of two checkpoints\n");
}

/* `ckpt info`'s text: the header (once the reader got that far), one line per dataset read,
 * and the checksum verdict when the whole file was walked (ok = the walk succeeded). */
static void ckpt_info_print(const char *path, const tg_ckpt_info *in, int show_config, int ok) {
    const tg_ckpt_state *s = &in->state;
    const tg_gpt2_config *c = &s->model_cfg;
    if (!in->header_read) return;
    printf("checkpoint      %s (%.1f MB)\n", path, (double)in->file_bytes / 1e6);
    printf("format          %s v%" PRId64 "\n", TG_CKPT_FORMAT_NAME, in->format_version);
    printf("step            %" PRId64 "\n", s->step);
    printf("tokens_seen     %" PRId64 "\n", s->tokens_seen);
    printf("rng_state       0x%016" PRIx64 "\n", s->rng_state);
    printf("saved by        world_size=%d zero_stage=%d\n", s->world_size, s->zero_stage);
    printf("model           T=%d V=%d Vp=%d L=%d NH=%d C=%d  (%" PRId64 " parameters)\n", c->max_seq_len,
           c->vocab_size, c->padded_vocab_size, c->n_layer, c->n_head, c->n_embd, in->n_params);
    if (c->arch == TG_MODEL_ARCH_LLAMA) {
        printf("arch            llama n_kv_head=%d ffn_dim=%d rope_theta=%g norm_eps=%g tie_embeddings=%d\n",
               c->n_kv_head, c->ffn_dim, c->rope_theta, c->norm_eps, c->tie_embeddings);
        if (c->rope_factor != 0)
            printf("rope_scaling    llama3 factor=%g low_freq_factor=%g high_freq_factor=%g original_max_pos=%d\n",
                   c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_pos);
    } else {
        printf("arch            gpt2\n");
    }
    printf("optimizer       %s%s\n",
           !in->has_adam ? "none"
           : s->muon     ? "Muon (momentum in m for the blocks' 2-D matrices) + AdamW m, v (gathered)"
                         : "AdamW m, v (gathered)",
           in->has_master ? " + fp32 master weights" : "");
    printf("tokenizer       %s (hash %s)\n", s->tokenizer_path[0] ? s->tokenizer_path : "-",
           s->tokenizer_hash[0] ? s->tokenizer_hash : "-");
    for (int r = 0; r < s->n_loader_states; r++)
        printf("loader[%d]       seed=%" PRIu64 " position=%" PRIu64 "\n", r, s->loader_states[r].seed,
               s->loader_states[r].position);
    printf("root attributes crc32c %08x  %s\n", in->meta_crc32c, in->meta_ok ? "ok" : "BAD (checksum)");
    size_t ini = strlen(s->config_ini);
    if (show_config) printf("config:\n%s%s", s->config_ini, ini > 0 && s->config_ini[ini - 1] != '\n' ? "\n" : "");
    printf("datasets:\n");
    int n_ok = 0;
    for (int i = 0; i < in->n_datasets; i++) {
        const tg_ckpt_dataset_info *d = &in->datasets[i];
        char shape[64];
        if (d->ndim == 2)
            snprintf(shape, sizeof shape, "[%llu, %llu]", (unsigned long long)d->dims[0],
                     (unsigned long long)d->dims[1]);
        else
            snprintf(shape, sizeof shape, "[%llu]", (unsigned long long)d->dims[0]);
        const char *verdict = !d->readable ? "BAD (unreadable)" : !d->crc_ok ? "BAD (checksum)" : "ok";
        printf("  %-44s %-14s %12zu B %12llu B stored  crc32c %08x  %s\n", d->label, shape, d->bytes,
               (unsigned long long)d->stored_bytes, d->crc32c, verdict);
        if (!d->readable) printf("    (%s)\n", d->why.msg);
        n_ok += d->crc_ok;
    }
    if (!ok) return;
    if (in->n_bad == 0) printf("checksums: all %d datasets ok\n", n_ok);
    else printf("checksums: %d BAD, %d ok\n", in->n_bad, n_ok);
}

int tg_cmd_ckpt(int argc, char **argv) {
    tg_error err = {0};
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        ckpt_usage();
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "diff") == 0) return tg_cmd_ckpt_diff(argc - 1, argv + 1);
    if (argc < 3) {
        ckpt_usage();
        return 2;
    }
    const char *sub = argv[1], *file = argv[2];
    if (strcmp(sub, "info") == 0) {
        int show_config = 1;
        file = NULL; /* options and FILE in any order */
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--no-config") == 0) {
                show_config = 0;
            } else if (strcmp(argv[i], "--checksums") == 0) {
                /* accepted for scripts: the per-dataset crc32c lines are always printed */
            } else if (argv[i][0] != '-' && !file) {
                file = argv[i];
            } else {
                fprintf(stderr, "truthgpt ckpt info: unknown option %s\n", argv[i]);
                ckpt_usage();
                return 2;
            }
        }
        if (!file) {
            fprintf(stderr, "truthgpt ckpt info: no FILE given\n");
            ckpt_usage();
            return 2;
        }
        tg_ckpt_info info;
        tg_status st = tg_ckpt_info_read(file, &info, &err);
        ckpt_info_print(file, &info, show_config, st == TG_OK);
        int n_bad = info.n_bad;
        tg_ckpt_info_free(&info);
        if (st != TG_OK) {
            fflush(stdout);
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        return n_bad ? 1 : 0;
    }
    if (strcmp(sub, "latest") == 0 && argc == 3) {
        tg_log lg = {0, 1, 1};
        char path[4096];
        int found = 0;
        if (tg_ckpt_find_latest(file, &lg, path, sizeof path, &found, &err) != TG_OK) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        if (!found) {
            fprintf(stderr, "no valid checkpoint in %s\n", file);
            return 1;
        }
        printf("%s\n", path);
        return 0;
    }
    ckpt_usage();
    return 2;
}
