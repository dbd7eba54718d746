/* app/cmd_interop.c — `truthgpt export` and `truthgpt import`: checkpoints to and from Hugging
 * Face model directories (interop/hf.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmds.h"
#include "ckpt/ckpt.h"
#include "data/tokenizer.h"
#include "interop/hf.h"
#include "interop/hf_tokenizer.h"

static void export_usage(void) {
    fprintf(stderr,
            "usage: truthgpt export CKPT --out DIR [--dtype fp32|bf16] [--tokenizer FILE]\n"
            "  Writes a Hugging Face directory (GPT2LMHeadModel, or LlamaForCausalLM for model.arch=llama):\n"
            "  config.json, generation_config.json and model.safetensors (the real vocabulary rows only; a\n"
            "  tied head is not stored twice).\n"
            "  With a tokenizer (--tokenizer, else the one recorded in the checkpoint if it exists) also\n"
            "  tokenizer.json (byte-level BPE, GPT-2 pre-tokenizer) and tokenizer_config.json.\n"
            "  bos/eos are the tokenizer's end-of-text id (without one: vocab_size - 1). dtype default fp32.\n");
}

int tg_cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *dtype = "fp32", *tok_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            export_usage();
            return 0;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            dtype = argv[++i];
        } else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) {
            tok_path = argv[++i];
        } else if (argv[i][0] != '-' && !ckpt) {
            ckpt = argv[i];
        } else {
            fprintf(stderr, "truthgpt export: unexpected argument '%s'\n", argv[i]);
            export_usage();
            return 2;
        }
    }
    if (!ckpt || !out || (strcmp(dtype, "fp32") != 0 && strcmp(dtype, "bf16") != 0)) {
        export_usage();
        return 2;
    }
    tg_error err = {0};
    tg_ckpt_state s = {0};
    tg_gpt2_layout lay = {0};
    tg_tokenizer *tok = NULL;
    tg_status st = tg_ckpt_load(ckpt, &s, &err);
    if (st == TG_OK) st = tg_gpt2_layout_init(&lay, &s.model_cfg, &err);
    if (st == TG_OK && !tok_path && s.tokenizer_path && s.tokenizer_path[0]) {
        FILE *probe = fopen(s.tokenizer_path, "rb");
        if (probe) {
            fclose(probe);
            tok_path = s.tokenizer_path;
        } else {
            fprintf(stderr, "truthgpt export: the checkpoint's tokenizer %s is not there; no tokenizer.json "
                            "(give --tokenizer FILE)\n", s.tokenizer_path);
        }
    }
    int eos = s.model_cfg.vocab_size - 1;
    if (st == TG_OK && tok_path) {
        st = tg_tokenizer_load(&tok, tok_path, &err);
        if (st == TG_OK) eos = tg_tokenizer_eot_id(tok);
        if (st == TG_OK && tg_tokenizer_vocab_size(tok) > s.model_cfg.vocab_size)
            st = tg_error_set(&err, TG_ERR_DATA, "tokenizer %s has %d tokens but the model only %d", tok_path,
                              tg_tokenizer_vocab_size(tok), s.model_cfg.vocab_size);
    }
    if (st == TG_OK)
        st = tg_hf_export(out, &lay, s.params, strcmp(dtype, "bf16") == 0 ? TG_ST_BF16 : TG_ST_F32, eos, &err);
    if (st == TG_OK && tok) st = tg_hf_tokenizer_write(out, tok, s.model_cfg.max_seq_len, &err);
    tg_tokenizer_free(tok);
    if (st == TG_OK) printf("exported %s (step %lld) to %s (%s)\n", ckpt, (long long)s.step, out, dtype);
    else fprintf(stderr, "truthgpt export: %s\n", err.msg);
    tg_gpt2_layout_free(&lay);
    tg_ckpt_state_free(&s);
    return st == TG_OK ? 0 : 1;
}

static void import_usage(void) {
    fprintf(stderr,
            "usage: truthgpt import DIR --out CKPT\n"
            "  Reads a Hugging Face GPT-2 or Llama directory (config.json + model.safetensors or the shards of\n"
            "  model.safetensors.index.json; F32/BF16/F16) and writes a truthgpt checkpoint of weights\n"
            "  only (step 0, no optimizer state; vocabulary padded to a multiple of 128 with zeros).\n"
            "  Start training from it with train.init_from=CKPT (or the directory itself).\n");
}

int tg_cmd_import(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            import_usage();
            return 0;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "truthgpt import: unexpected argument '%s'\n", argv[i]);
            import_usage();
            return 2;
        }
    }
    if (!dir || !out) {
        import_usage();
        return 2;
    }
    tg_error err = {0};
    tg_ckpt_state s = {0};
    tg_status st = tg_hf_import(dir, &s.model_cfg, &s.params, &err);
    /* the writer stores every string attribute; "" says "none" */
    s.config_ini = strdup("");
    s.tokenizer_hash = strdup("");
    s.tokenizer_path = strdup("");
    if (st == TG_OK && (!s.config_ini || !s.tokenizer_hash || !s.tokenizer_path))
        st = tg_error_set(&err, TG_ERR_NOMEM, "out of memory");
    if (st == TG_OK) st = tg_ckpt_write_file(out, &s, &err);
    if (st == TG_OK)
        printf("imported %s to %s (%s, n_layer %d, n_head %d, n_embd %d, vocab %d padded to %d, seq_len %d)\n", dir,
               out, s.model_cfg.arch == TG_MODEL_ARCH_LLAMA ? "llama" : "gpt2", s.model_cfg.n_layer,
               s.model_cfg.n_head, s.model_cfg.n_embd, s.model_cfg.vocab_size, s.model_cfg.padded_vocab_size,
               s.model_cfg.max_seq_len);
    else fprintf(stderr, "truthgpt import: %s\n", err.msg);
    tg_ckpt_state_free(&s);
    return st == TG_OK ? 0 : 1;
}

static void tokenizer_import_usage(void) {
    fprintf(stderr,
            "usage: truthgpt tokenizer import (--tokenizer-json FILE | --vocab vocab.json [--merges merges.txt])\n"
            "                                 --out FILE.tiktoken\n"
            "  Converts a Hugging Face byte-level BPE tokenizer (GPT-2 style) into truthgpt's tiktoken rank\n"
            "  file: rank = the vocab id; the end-of-text token must come after the last rank. The merges\n"
            "  are checked (each joins two tokens into a third); the ranks decide the merge order.\n");
}

int tg_cmd_tokenizer_import(int argc, char **argv) {
    const char *tj = NULL, *vj = NULL, *mt = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tokenizer_import_usage();
            return 0;
        } else if (strcmp(argv[i], "--tokenizer-json") == 0 && v) {
            tj = argv[++i];
        } else if (strcmp(argv[i], "--vocab") == 0 && v) {
            vj = argv[++i];
        } else if (strcmp(argv[i], "--merges") == 0 && v) {
            mt = argv[++i];
        } else if (strcmp(argv[i], "--out") == 0 && v) {
            out = argv[++i];
        } else {
            fprintf(stderr, "truthgpt tokenizer import: unexpected argument '%s'\n", argv[i]);
            tokenizer_import_usage();
            return 2;
        }
    }
    if (!out || (!tj == !vj) || (tj && mt)) {
        tokenizer_import_usage();
        return 2;
    }
    tg_error err = {0};
    tg_tokenizer *tok = NULL;
    tg_status st = tg_hf_tokenizer_import(tj, vj, mt, out, &err);
    if (st == TG_OK) st = tg_tokenizer_load(&tok, out, &err); /* proves the file loads */
    if (st == TG_OK)
        printf("imported %s to %s: %d tokens + end of text (id %d)\n", tj ? tj : vj, out,
               tg_tokenizer_eot_id(tok), tg_tokenizer_eot_id(tok));
    else fprintf(stderr, "truthgpt tokenizer import: %s\n", err.msg);
    tg_tokenizer_free(tok);
    return st == TG_OK ? 0 : 1;
}
