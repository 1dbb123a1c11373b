/* generate: one prompt, one streamed answer.
 *
 *   generate [--chat] MODEL "PROMPT" [max_tokens]
 *
 * Greedy unless TMAC_TEMPERATURE is set. Without --chat the prompt is continued as plain text;
 * with --chat it is sent as a user message through the model's chat template. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmac.h"

int main(int argc, char **argv) {
    int chat = argc > 1 && strcmp(argv[1], "--chat") == 0;
    if (argc - chat < 3) {
        fprintf(stderr, "usage: %s [--chat] MODEL \"PROMPT\" [max_tokens]\n", argv[0]);
        return 2;
    }
    const char *model = argv[1 + chat], *prompt = argv[2 + chat];

    tmac_params params = tmac_params_default();
    params.max_tokens = argc - chat > 3 ? (uint32_t)atoi(argv[3 + chat]) : 128;
    const char *temp = getenv("TMAC_TEMPERATURE");
    if (temp) params.temperature = (float)atof(temp);

    tmac *t = NULL;
    tmac_status s = tmac_load(model, &params, &t);
    if (s != TMAC_OK) {
        fprintf(stderr, "generate: %s: %s\n", tmac_status_str(s), tmac_last_error(NULL));
        return 1;
    }
    s = chat ? tmac_prompt_chat(t, "user", prompt, strlen(prompt))
             : tmac_prompt(t, prompt, strlen(prompt));
    char piece[64];
    size_t n = 0;
    while (s == TMAC_OK && (s = tmac_next_token(t, piece, sizeof piece, &n)) == TMAC_OK) {
        fwrite(piece, 1, n, stdout);
        fflush(stdout);
    }
    putchar('\n');
    int rc = 0;
    if (s != TMAC_DONE) {
        fprintf(stderr, "generate: %s: %s\n", tmac_status_str(s), tmac_last_error(t));
        rc = 1;
    }
    tmac_free(t);
    return rc;
}
