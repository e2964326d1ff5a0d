/* tokenizer_api.c: the public tokenizer functions of r1.h over the model's tokenizer. */
#include <string.h>

#include "error.h"
#include "model.h"
#include "r1.h"
#include "tokenizer.h"

static r1_status r1_need_model(const r1_model *m, const char *fn)
{
    return m == NULL ? r1_error__set(R1_ERR_INVALID_ARG, "%s: model is NULL", fn) : R1_OK;
}

R1_API r1_status r1_tokenize(const r1_model *model, const char *text, size_t text_len,
                             uint32_t flags, int32_t *ids, size_t cap, size_t *n_out)
{
    r1_error__clear();
    r1_status st = r1_need_model(model, "r1_tokenize");
    if (st != R1_OK)
        return st;
    if (n_out == NULL || (text == NULL && text_len > 0) || (ids == NULL && cap > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_tokenize: %s is NULL",
                             n_out == NULL  ? "n_out"
                             : text == NULL ? "text"
                                            : "ids");
    if (flags &
        ~(uint32_t)(R1_TOKENIZE_ADD_BOS | R1_TOKENIZE_PARSE_SPECIAL | R1_TOKENIZE_REPLACE_INVALID))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_tokenize: unknown flags 0x%x", flags);
    return r1_tokenizer__encode(r1_model__tokenizer(model), text ? text : "", text_len, flags, ids,
                                cap, n_out);
}

R1_API r1_status r1_detokenize(const r1_model *model, const int32_t *ids, size_t n, uint32_t flags,
                               char *buf, size_t cap, size_t *len_out)
{
    r1_error__clear();
    r1_status st = r1_need_model(model, "r1_detokenize");
    if (st != R1_OK)
        return st;
    if (len_out == NULL || (ids == NULL && n > 0) || (buf == NULL && cap > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_detokenize: %s is NULL",
                             len_out == NULL ? "len_out"
                             : ids == NULL   ? "ids"
                                             : "buf");
    if (flags & ~(uint32_t)R1_DETOKENIZE_SKIP_SPECIAL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_detokenize: unknown flags 0x%x", flags);
    /* The NUL needs room too; report the size without it, as every r1 text output does. */
    size_t len = 0;
    st = r1_tokenizer__decode(r1_model__tokenizer(model), ids, n, flags, buf, cap ? cap - 1 : 0,
                              &len);
    *len_out = len;
    if (st == R1_OK && buf != NULL)
        buf[len] = '\0';
    if (st == R1_OK && cap == 0)
        st = r1_error__set(R1_ERR_BUFFER_TOO_SMALL, "r1_detokenize: %zu bytes needed", len + 1);
    return st;
}

R1_API int32_t r1_token_count(const r1_model *model)
{
    r1_error__clear();
    if (r1_need_model(model, "r1_token_count") != R1_OK)
        return -1;
    return (int32_t)r1_tokenizer__n_ids(r1_model__tokenizer(model));
}

R1_API int32_t r1_token_bos(const r1_model *model)
{
    r1_error__clear();
    if (r1_need_model(model, "r1_token_bos") != R1_OK)
        return -1;
    return r1_tokenizer__bos_id(r1_model__tokenizer(model));
}

R1_API int32_t r1_token_eos(const r1_model *model)
{
    r1_error__clear();
    if (r1_need_model(model, "r1_token_eos") != R1_OK)
        return -1;
    return r1_tokenizer__eos_id(r1_model__tokenizer(model));
}

R1_API r1_status r1_token_find(const r1_model *model, const char *piece, int32_t *id_out)
{
    r1_error__clear();
    r1_status st = r1_need_model(model, "r1_token_find");
    if (st != R1_OK)
        return st;
    if (piece == NULL || id_out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_token_find: %s is NULL",
                             piece ? "id_out" : "piece");
    int32_t id = r1_tokenizer__token_to_id(r1_model__tokenizer(model), piece, strlen(piece));
    if (id < 0)
        return r1_error__set(R1_ERR_NOT_FOUND, "no token is exactly '%.64s'", piece);
    *id_out = id;
    return R1_OK;
}
