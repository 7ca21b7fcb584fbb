/* Debug builds fill fresh arena bytes with 0xA5 and released bytes with 0xDD. */
#include <stdio.h>

#include "../check.h"
#include "qorus_core.h"

int main(void)
{
    q_context ctx = {0};
    CHECK(q_alloc_arena(&ctx, 4096) == Q_OK);
    unsigned char *a = q_arena_alloc(&ctx, 100);
    CHECK(a != NULL);
    int fresh = 1;
    for (int i = 0; i < 100; i++)
        fresh &= a[i] == 0xA5;
    CHECK(fresh);
    for (int i = 0; i < 100; i++)
        a[i] = 0;
    q_arena_reset(&ctx);
    int released = 1;
    for (int i = 0; i < 100; i++)
        released &= ((volatile unsigned char *)ctx.scratch_buffer)[i] == 0xDD;
    CHECK(released);
    q_free_memory(&ctx);
    return check_failures != 0;
}
