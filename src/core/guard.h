/*
 * The SIGBUS guard of model mappings (guard.c): the memory core registers every file
 * mapping it makes and unregisters it before unmapping it.
 */
#ifndef QORUS_GUARD_H
#define QORUS_GUARD_H

#include <stddef.h>

/* Guards [start, start + size) (installs the handler with the first mapping). A full table
 * leaves the mapping unguarded: it still works, as an unguarded mapping would. */
void q_guard_register(const void *start, size_t size);

/* Stops guarding the mapping at `start` (restores the previous SIGBUS disposition with the
 * last one). Call before munmap. Unknown addresses are ignored. */
void q_guard_unregister(const void *start);

/* 1 if a fault was repaired inside the mapping at `start`. */
int q_guard_damaged(const void *start);

#endif
