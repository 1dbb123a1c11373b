/* chat: an interactive conversation with the model's chat template.
 *
 *   chat MODEL ["SYSTEM MESSAGE"]
 *
 * Type a message and press enter; an empty line or end of input quits. Set TMAC_TEMPERATURE
 * for sampling (default greedy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmac.h"

static int reply(tmac *t) {
    char piece[64];
    size_t n = 0;
    tmac_status s;
    while ((s = tmac_next_token(t, piece, sizeof piece, &n)) == TMAC_OK) {
        fwrite(piece, 1, n, stdout);
        fflush(stdout);
    }
    putchar('\n');
    if (s != TMAC_DONE) {
        fprintf(stderr, "chat: %s: %s\n", tmac_status_str(s), tmac_last_error(t));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [\"SYSTEM MESSAGE\"]\n", argv[0]);
        return 2;
    }
    tmac_params params = tmac_params_default();
    params.max_tokens = 512;
    const char *temp = getenv("TMAC_TEMPERATURE");
    if (temp) params.temperature = (float)atof(temp);

    tmac *t = NULL;
    tmac_status s = tmac_load(argv[1], &params, &t);
    if (s != TMAC_OK) {
        fprintf(stderr, "chat: %s: %s\n", tmac_status_str(s), tmac_last_error(NULL));
        return 1;
    }
    if (argc > 2 && (s = tmac_prompt_chat(t, "system", argv[2], strlen(argv[2]))) != TMAC_OK) {
        fprintf(stderr, "chat: %s: %s\n", tmac_status_str(s), tmac_last_error(t));
        tmac_free(t);
        return 1;
    }
    char line[4096];
    int rc = 0;
    for (;;) {
        fputs("> ", stdout);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        size_t len = strcspn(line, "\r\n");
        if (len == 0) break;
        s = tmac_prompt_chat(t, "user", line, len);
        if (s == TMAC_ERR_CONTEXT_FULL) {
            fprintf(stderr, "chat: the conversation is full; starting over\n");
            tmac_reset(t);
            s = tmac_prompt_chat(t, "user", line, len);
        }
        if (s != TMAC_OK) {
            fprintf(stderr, "chat: %s: %s\n", tmac_status_str(s), tmac_last_error(t));
            rc = 1;
            break;
        }
        if ((rc = reply(t)) != 0) break;
    }
    tmac_free(t);
    return rc;
}
