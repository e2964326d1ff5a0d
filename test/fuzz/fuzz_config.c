/* fuzz_config.c: libFuzzer target for the Hugging Face config.json reader (the converter's
 * input) and the config validation behind it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    r1_model_config cfg;
    r1_status st = r1_model_config__from_json(&cfg, (const char *)data, size);
    if (st != R1_OK) {
        FUZZ_CHECK(st == R1_ERR_FORMAT || st == R1_ERR_UNSUPPORTED || st == R1_ERR_NO_MEMORY);
        return 0;
    }
    /* What the converter does with an accepted config: validate, then walk the layers and
     * write the enum fields back as text. */
    if (r1_model_config__validate(&cfg) == R1_OK) {
        int64_t n = r1_model_config__n_layers_stored(&cfg);
        FUZZ_CHECK(n >= cfg.num_hidden_layers);
        for (int64_t l = 0; l < n && l < 4096; l++)
            (void)r1_model_config__layer_is_moe(&cfg, l);
    }
    size_t nf;
    const r1_config_field *f = r1_model_config__fields(&nf);
    for (size_t i = 0; i < nf; i++)
        if (f[i].kind == R1_CONFIG_STR)
            FUZZ_CHECK(r1_model_config__get_string(&cfg, f[i].key) != NULL);
    return 0;
}
