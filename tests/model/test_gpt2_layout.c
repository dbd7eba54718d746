/* The named tensor indices of model/gpt2.h (tg_gpt2_block_index, tg_gpt2_final_index) against
 * the layout's table: every index names the tensor its enum says, for every block, so a change
 * of the table's order cannot leave the backends reading the wrong tensor. */
#include <stdio.h>
#include <string.h>

#include "model/gpt2.h"
#include "tg_test.h"

int main(void) {
    static const char *const suffix[TG_GPT2_BLOCK_TENSORS] = {
        [TG_GPT2_LN1_W] = "ln_1.weight",         [TG_GPT2_LN1_B] = "ln_1.bias",
        [TG_GPT2_QKV_W] = "attn.c_attn.weight",  [TG_GPT2_QKV_B] = "attn.c_attn.bias",
        [TG_GPT2_ATTPROJ_W] = "attn.c_proj.weight", [TG_GPT2_ATTPROJ_B] = "attn.c_proj.bias",
        [TG_GPT2_LN2_W] = "ln_2.weight",         [TG_GPT2_LN2_B] = "ln_2.bias",
        [TG_GPT2_FC_W] = "mlp.c_fc.weight",      [TG_GPT2_FC_B] = "mlp.c_fc.bias",
        [TG_GPT2_FCPROJ_W] = "mlp.c_proj.weight", [TG_GPT2_FCPROJ_B] = "mlp.c_proj.bias",
    };
    tg_gpt2_config cfg = {.max_seq_len = 16, .vocab_size = 100, .n_layer = 3, .n_head = 2, .n_embd = 8};
    tg_gpt2_layout lay;
    tg_error err = {0};
    char want[TG_GPT2_MAX_NAME];
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    CHECK_OK(tg_gpt2_layout_init(&lay, &cfg, &err), &err);
    CHECK(lay.n_tensors == tg_gpt2_final_index(cfg.n_layer, TG_GPT2_LNF_B) + 1);
    CHECK(strcmp(lay.tensors[TG_GPT2_WTE].name, "transformer.wte.weight") == 0);
    CHECK(strcmp(lay.tensors[TG_GPT2_WPE].name, "transformer.wpe.weight") == 0);
    for (int l = 0; l < cfg.n_layer; l++) {
        CHECK(lay.tensors[tg_gpt2_block_index(l, TG_GPT2_LN1_W)].offset == lay.layer_begin[l]);
        for (int k = 0; k < TG_GPT2_BLOCK_TENSORS; k++) {
            const tg_tensor_info *t = &lay.tensors[tg_gpt2_block_index(l, (tg_gpt2_block_tensor)k)];
            snprintf(want, sizeof want, "transformer.h.%d.%s", l, suffix[k]);
            CHECKF(strcmp(t->name, want) == 0 && t->layer == l, "block %d tensor %d is %s, expected %s", l, k,
                   t->name, want);
        }
    }
    CHECK(strcmp(lay.tensors[tg_gpt2_final_index(cfg.n_layer, TG_GPT2_LNF_W)].name, "transformer.ln_f.weight") == 0);
    CHECK(strcmp(lay.tensors[tg_gpt2_final_index(cfg.n_layer, TG_GPT2_LNF_B)].name, "transformer.ln_f.bias") == 0);
    CHECK(lay.tensors[tg_gpt2_final_index(cfg.n_layer, TG_GPT2_LNF_W)].offset == lay.layer_begin[cfg.n_layer]);
    tg_gpt2_layout_free(&lay);
    TEST_MAIN_END();
}
