/*
 * Sanitizer death tests of the arena: run by expect_death.cmake, which passes only when the
 * sanitizer aborts with its report. Modes:
 *   overflow     write one byte past a q_arena_alloc(ctx, 100) block (inside its 64-byte
 *                rounding, so only the poisoning can catch it)
 *   after-reset  read a block after q_arena_reset
 *   uninit       branch on a freshly allocated byte (MemorySanitizer)
 *   in-bounds    the control: the last requested byte is fine, exit 0
 */
#include <stdio.h>
#include <string.h>

#include "qorus_core.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: death_arena overflow|after-reset|uninit|in-bounds\n");
        return 2;
    }
    q_context ctx = {0};
    if (q_alloc_arena(&ctx, 1 << 16) != Q_OK)
        return 2;
    volatile unsigned char *block = q_arena_alloc(&ctx, 100);
    if (block == NULL)
        return 2;
    const char *mode = argv[1];
    int result = 0;
    if (strcmp(mode, "overflow") == 0) {
        block[100] = 1;
    } else if (strcmp(mode, "after-reset") == 0) {
        block[0] = 7;
        q_arena_reset(&ctx);
        result = block[0];
    } else if (strcmp(mode, "uninit") == 0) {
        if (block[10] == 42)
            puts("forty-two");
    } else if (strcmp(mode, "in-bounds") == 0) {
        block[99] = 1;
        result = block[99] - 1;
    } else {
        return 2;
    }
    q_free_memory(&ctx);
    return result;
}
