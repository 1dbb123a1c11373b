/* C API test: every documented misuse gets its documented status and a message, the handle
 * stays usable where the header says so, and nothing crashes. Run under ASan+UBSan and
 * valgrind by `make test-c`.
 *
 *   test_capi MODEL.gguf SCRATCH_DIR [--smollm2]
 *
 * Any model works; --smollm2 adds the checks that need SmolLM2-135M-Instruct (its shapes, and
 * emoji that span several tokens). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmac.h"

#include "check.h"

static const char *model_path;
static int smollm2 = 0;
static char scratch[4096];

/* Valid UTF-8 check of exactly n bytes. */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

/* Generate until DONE with buffers of `cap` bytes, growing only when told to; returns text. */
static char *generate_all(tmac *t, size_t cap, int *empty_pieces) {
    size_t total = 0, alloc = 1024, n = 0;
    char *out = malloc(alloc);
    char *buf = malloc(cap);
    tmac_status s;
    *empty_pieces = 0;
    for (;;) {
        s = tmac_next_token(t, buf, cap, &n);
        if (s == TMAC_ERR_BUFFER_TOO_SMALL) {
            CHECK(n > cap && n <= 5, "needed size %zu with cap %zu", n, cap);
            CHECK(strstr(tmac_last_error(t), "buffer") != NULL, "message: %s", tmac_last_error(t));
            cap = n;
            buf = realloc(buf, cap);
            continue;
        }
        if (s != TMAC_OK) break;
        CHECK(valid_utf8((unsigned char *)buf, n), "piece of %zu bytes is not whole UTF-8", n);
        CHECK(buf[n] == 0, "piece not NUL-terminated");
        if (n == 0) (*empty_pieces)++;
        if (total + n + 1 > alloc) out = realloc(out, alloc = 2 * (total + n + 1));
        memcpy(out + total, buf, n);
        total += n;
    }
    CHECK_STATUS(s, TMAC_DONE);
    out[total] = 0;
    free(buf);
    return out;
}

static void test_null_arguments(void) {
    tmac *t = NULL;
    CHECK_STATUS(tmac_load(NULL, NULL, &t), TMAC_ERR_NULL_ARG);
    CHECK(strstr(tmac_last_error(NULL), "NULL") != NULL, "message: %s", tmac_last_error(NULL));
    CHECK_STATUS(tmac_load(model_path, NULL, NULL), TMAC_ERR_NULL_ARG);
    CHECK_STATUS(tmac_load_from_memory(NULL, 10, NULL, &t), TMAC_ERR_NULL_ARG);
    CHECK(t == NULL, "out written on failure");

    char buf[16];
    size_t n = 99;
    CHECK_STATUS(tmac_prompt(NULL, "hi", 2), TMAC_ERR_NULL_ARG);
    CHECK_STATUS(tmac_prompt_chat(NULL, "user", "hi", 2), TMAC_ERR_NULL_ARG);
    CHECK_STATUS(tmac_next_token(NULL, buf, sizeof buf, &n), TMAC_ERR_NULL_ARG);
    CHECK(n == 99, "out_len written on failure");
    CHECK_STATUS(tmac_reset(NULL), TMAC_ERR_NULL_ARG);
    CHECK_STATUS(tmac_set_temperature(NULL, 0.5f), TMAC_ERR_NULL_ARG);
    CHECK_STATUS(tmac_set_seed(NULL, 1), TMAC_ERR_NULL_ARG);
    CHECK(strstr(tmac_last_error(NULL), "NULL") != NULL, "message: %s", tmac_last_error(NULL));
    tmac_free(NULL);
}

static void test_bad_files(void) {
    tmac *t = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/does-not-exist.gguf", scratch);
    CHECK_STATUS(tmac_load(path, NULL, &t), TMAC_ERR_IO);
    CHECK(strstr(tmac_last_error(NULL), "does-not-exist.gguf") != NULL, "message: %s", tmac_last_error(NULL));

    /* a corrupt copy: the first 100 kB of the real model */
    FILE *in = fopen(model_path, "rb");
    snprintf(path, sizeof path, "%s/corrupt.gguf", scratch);
    FILE *out = fopen(path, "wb");
    CHECK(in && out, "cannot make %s", path);
    if (!in || !out) return;
    static char chunk[100000];
    size_t got = fread(chunk, 1, sizeof chunk, in);
    fwrite(chunk, 1, got, out);
    fclose(in);
    fclose(out);
    CHECK_STATUS(tmac_load(path, NULL, &t), TMAC_ERR_BAD_MODEL);
    CHECK(strstr(tmac_last_error(NULL), "corrupt.gguf") != NULL, "message: %s", tmac_last_error(NULL));
    CHECK(t == NULL, "out written on failure");

    CHECK_STATUS(tmac_load_from_memory(chunk, got, NULL, &t), TMAC_ERR_BAD_MODEL);
    CHECK_STATUS(tmac_load_from_memory("not a model", 11, NULL, &t), TMAC_ERR_BAD_MODEL);
    CHECK(strlen(tmac_last_error(NULL)) > 0, "no message");

    tmac_params p = tmac_params_default();
    if (smollm2) { /* its default context (2048) needs about 100 MiB of KV cache */
        p.memory_budget_mib = 8;
        CHECK_STATUS(tmac_load(model_path, &p, &t), TMAC_ERR_LIMIT);
        CHECK(strstr(tmac_last_error(NULL), "memory budget") != NULL, "message: %s", tmac_last_error(NULL));
        p.memory_budget_mib = 512;
        CHECK_STATUS(tmac_load(model_path, &p, &t), TMAC_OK);
        tmac_free(t);
        t = NULL;
    }
    p = tmac_params_default();
    p.struct_size = 0;
    CHECK_STATUS(tmac_load(model_path, &p, &t), TMAC_ERR_INVALID_ARG);
    CHECK(strstr(tmac_last_error(NULL), "struct_size") != NULL, "message: %s", tmac_last_error(NULL));
}

static void test_session(void) {
    tmac_params p = tmac_params_default();
    p.n_ctx = 64;
    p.max_tokens = 12;
    tmac *t = NULL;
    CHECK_STATUS(tmac_load(model_path, &p, &t), TMAC_OK);
    if (!t) return;

    tmac_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_STATUS(tmac_model_info(t, &info), TMAC_OK);
    CHECK(info.n_ctx == 64 && info.n_layer > 0 && info.n_vocab > 0, "info %u %u", info.n_ctx, info.n_layer);
    if (smollm2) {
        CHECK(info.n_layer == 30 && info.n_embd == 576 && info.n_vocab == 49152, "info shapes");
        CHECK(info.n_ctx_train == 8192, "info ctx %u", info.n_ctx_train);
    }
    CHECK(strcmp(info.architecture, "llama") == 0, "arch %s", info.architecture);
    CHECK(info.kernel && strlen(info.kernel) > 0 && info.bits_per_weight > 1.0f, "kernel");

    /* generating before any prompt is a state error */
    char buf[64];
    size_t n = 0;
    CHECK_STATUS(tmac_next_token(t, buf, sizeof buf, &n), TMAC_ERR_STATE);
    CHECK(strlen(tmac_last_error(t)) > 0, "no message");

    /* invalid UTF-8 is refused; the handle stays usable */
    CHECK_STATUS(tmac_prompt(t, "abc\xff\xfe", 5), TMAC_ERR_INVALID_ARG);
    CHECK(strstr(tmac_last_error(t), "UTF-8") != NULL, "message: %s", tmac_last_error(t));
    CHECK_STATUS(tmac_prompt(t, NULL, 3), TMAC_ERR_NULL_ARG);

    /* a prompt longer than the context: refused whole, handle still usable */
    char longp[4000] = "";
    for (int i = 0; i < 200; i++) strcat(longp, "word ");
    CHECK_STATUS(tmac_prompt(t, longp, strlen(longp)), TMAC_ERR_CONTEXT_FULL);
    CHECK(strstr(tmac_last_error(t), "context") != NULL, "message: %s", tmac_last_error(t));

    /* after those errors: generate with big buffers, then again with tiny ones */
    const char *q = "The capital of France is";
    CHECK_STATUS(tmac_prompt(t, q, strlen(q)), TMAC_OK);
    int empty = 0;
    char *big = generate_all(t, 64, &empty);
    CHECK(!smollm2 || strstr(big, "Paris") != NULL, "text: %s", big);
    CHECK_STATUS(tmac_next_token(t, buf, sizeof buf, &n), TMAC_DONE);
    CHECK(n == 0, "DONE with text");

    CHECK_STATUS(tmac_reset(t), TMAC_OK);
    CHECK_STATUS(tmac_prompt(t, q, strlen(q)), TMAC_OK);
    n = 0;
    tmac_status first = tmac_next_token(t, buf, 1, &n);
    CHECK(first == TMAC_ERR_BUFFER_TOO_SMALL || (first == TMAC_OK && n == 0), "status %d", (int)first);
    CHECK(first != TMAC_ERR_BUFFER_TOO_SMALL || (n >= 2 && n <= 5), "needed %zu", n);
    char *tiny = generate_all(t, 2, &empty);
    CHECK(strcmp(big, tiny) == 0, "greedy text differs: '%s' vs '%s'", big, tiny);
    free(big);
    free(tiny);

    /* sampler setters validate */
    CHECK_STATUS(tmac_set_temperature(t, -1.0f), TMAC_ERR_INVALID_ARG);
    CHECK_STATUS(tmac_set_top_p(t, 0.0f), TMAC_ERR_INVALID_ARG);
    CHECK_STATUS(tmac_set_top_k(t, 5), TMAC_OK);
    CHECK_STATUS(tmac_set_temperature(t, 0.9f), TMAC_OK);
    CHECK_STATUS(tmac_set_seed(t, 42), TMAC_OK);
    CHECK_STATUS(tmac_reset(t), TMAC_OK);
    CHECK_STATUS(tmac_prompt(t, q, strlen(q)), TMAC_OK);
    char *s1 = generate_all(t, 64, &empty);
    CHECK_STATUS(tmac_set_seed(t, 42), TMAC_OK);
    CHECK_STATUS(tmac_reset(t), TMAC_OK);
    CHECK_STATUS(tmac_prompt(t, q, strlen(q)), TMAC_OK);
    char *s2 = generate_all(t, 64, &empty);
    CHECK(strcmp(s1, s2) == 0, "same seed, different text: '%s' vs '%s'", s1, s2);
    free(s1);
    free(s2);

    /* a second handle on the same file, and a session sharing this model */
    tmac *t2 = NULL, *t3 = NULL;
    CHECK_STATUS(tmac_load(model_path, &p, &t2), TMAC_OK);
    CHECK_STATUS(tmac_new_session(t, &p, &t3), TMAC_OK);
    CHECK_STATUS(tmac_new_session(t, &p, NULL), TMAC_ERR_NULL_ARG);
    CHECK_STATUS(tmac_prompt(t3, q, strlen(q)), TMAC_OK);
    CHECK_STATUS(tmac_next_token(t3, buf, sizeof buf, &n), TMAC_OK);
    tmac_free(t2);
    tmac_free(t3);
    tmac_free(t);
}

/* Kernel description of a freshly loaded handle (static buffer), or "" if the load failed. */
static const char *loaded_kernel(uint32_t flags, tmac **out) {
    tmac_params p = tmac_params_default();
    p.n_ctx = 64;
    p.max_tokens = 8;
    p.flags = flags;
    static char desc[3][128];
    static int next = 0;
    char *d = desc[next++ % 3];
    d[0] = 0;
    *out = NULL;
    CHECK_STATUS(tmac_load(model_path, &p, out), TMAC_OK);
    tmac_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (*out && tmac_model_info(*out, &info) == TMAC_OK) snprintf(d, 128, "%s", info.kernel);
    return d;
}

/* SmolLM2 through handle t completes "The capital of France is" with Paris. */
static void expect_paris(tmac *t, const char *what) {
    const char *q = "The capital of France is";
    int empty = 0;
    CHECK_STATUS(tmac_prompt(t, q, strlen(q)), TMAC_OK);
    char *text = generate_all(t, 64, &empty);
    CHECK(strstr(text, "Paris") != NULL, "%s: '%s'", what, text);
    free(text);
}

/* The tables flags: each kind is honoured, both handles live at once on the same file (a
 * shared model must not hand one kind to a caller who asked for the other), both at once is
 * refused. Models without lookup-table matrices (f32, 8-bit) have no tables to choose. */
static void test_tables(void) {
    tmac *ti = NULL, *te = NULL, *tf = NULL;
    const char *int8 = loaded_kernel(TMAC_FLAG_INT8_TABLES, &ti);
    const char *exact = loaded_kernel(TMAC_FLAG_EXACT_TABLES, &te);
    const char *f32 = loaded_kernel(TMAC_FLAG_F32 | TMAC_FLAG_INT8_TABLES, &tf);
    int lut = strstr(exact, "tables") != NULL;
    CHECK(!smollm2 || lut, "SmolLM2 Q4_1 runs on lookup tables: kernel '%s'", exact);
    CHECK(!lut || strstr(exact, "exact tables") != NULL, "kernel '%s'", exact);
    CHECK(!lut || strstr(int8, "int8 tables") != NULL, "kernel '%s'", int8);
    CHECK(strcmp(f32, "f32") == 0, "kernel '%s'", f32);
    if (smollm2 && ti) expect_paris(ti, "int8 tables");
    tmac_free(ti);
    tmac_free(te);
    tmac_free(tf);

    tmac_params p = tmac_params_default();
    p.flags = TMAC_FLAG_INT8_TABLES | TMAC_FLAG_EXACT_TABLES;
    tmac *t = NULL;
    CHECK_STATUS(tmac_load(model_path, &p, &t), TMAC_ERR_INVALID_ARG);
    CHECK(t == NULL, "handle on failure");
    CHECK(strstr(tmac_last_error(NULL), "exclusive") != NULL, "message: %s", tmac_last_error(NULL));
}

/* TMAC_FLAG_KV_F16: a KV cache in f16 answers as f32 does on SmolLM2 ("Paris"); an unknown
 * flag bit next to it is still refused. */
static void test_kv_f16(void) {
    tmac *t = NULL;
    loaded_kernel(TMAC_FLAG_KV_F16, &t);
    if (smollm2 && t) expect_paris(t, "f16 KV cache");
    tmac_free(t);
    tmac_params p = tmac_params_default();
    p.flags = TMAC_FLAG_KV_F16 << 1;
    t = NULL;
    CHECK_STATUS(tmac_load(model_path, &p, &t), TMAC_ERR_INVALID_ARG);
    CHECK(t == NULL, "handle on failure");
}

static void test_multibyte(void) {
    tmac_params p = tmac_params_default();
    p.n_ctx = 128;
    p.max_tokens = 24;
    tmac *t = NULL;
    CHECK_STATUS(tmac_load(model_path, &p, &t), TMAC_OK);
    if (!t) return;
    const char *q = "Write three emoji that describe a happy day.";
    CHECK_STATUS(tmac_prompt_chat(t, "user", q, strlen(q)), TMAC_OK);
    int empty = 0;
    char *text = generate_all(t, 8, &empty);
    int non_ascii = 0;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) non_ascii += *c >= 0x80;
    CHECK(non_ascii >= 4 && empty >= 1, "expected emoji split across tokens, got '%s' (%d empty pieces)",
          text, empty);
    CHECK(valid_utf8((const unsigned char *)text, strlen(text)), "whole text is not UTF-8");
    free(text);
    tmac_free(t);
}

static void test_statics(void) {
    CHECK(strcmp(tmac_version(), TMAC_VERSION_STRING) == 0, "version %s vs %s", tmac_version(),
          TMAC_VERSION_STRING);
    CHECK(tmac_abi_version() == TMAC_ABI_VERSION, "abi");
    CHECK(strcmp(tmac_status_str(TMAC_ERR_CONTEXT_FULL), "context full") == 0, "status str");
    CHECK(strcmp(tmac_status_str(12345), "unknown status") == 0, "unknown status str");
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    snprintf(scratch, sizeof scratch, "%s", argv[2]);
    smollm2 = argc > 3 && strcmp(argv[3], "--smollm2") == 0;
    test_statics();
    test_null_arguments();
    test_bad_files();
    test_session();
    test_tables();
    test_kv_f16();
    if (smollm2) test_multibyte();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_capi: all checks passed\n");
    return 0;
}
