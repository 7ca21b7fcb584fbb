/*
 * The SIGBUS guard of model mappings (guard.c): the memory core registers every file
 * mapping it makes and unregisters it before unmapping it.
 */
#ifndef QORUS_GUARD_H
#define QORUS_GUARD_H

#include <stddef.h>
#include <sys/stat.h>

/* Guards [start, start + size), the mapping of the open file `fd` whose fstat is `st`
 * (installs the handler with the first mapping). Returns 1 if it took `fd` (closed by
 * q_guard_unregister); 0 when the table is full: the mapping is then unguarded (it still
 * works, as an unguarded mapping would) and the caller keeps `fd`. */
int q_guard_register(const void *start, size_t size, int fd, const struct stat *st);

/* Stops guarding the mapping at `start` (restores the previous SIGBUS disposition with the
 * last one). Call before munmap. Unknown addresses are ignored. */
void q_guard_unregister(const void *start);

/* 1 if a fault was repaired inside the mapping at `start`, or its file changed size or
 * mtime since it was mapped. */
int q_guard_damaged(const void *start);

#endif
