/*
 * The library's only doors to the OS for memory and files. Each call counts toward the
 * test hook of qorus_testing.h, which can make the Nth one fail (open/mmap/mprotect return
 * -1 / MAP_FAILED with errno ENOMEM, the heap functions NULL). Every module of the library
 * allocates through these, never malloc/mmap directly.
 */
#ifndef QORUS_OS_H
#define QORUS_OS_H

#include <stddef.h>
#include <sys/types.h>

int q_os_open_read(const char *path);
void *q_os_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset);
int q_os_munmap(void *addr, size_t len);
int q_os_mprotect(void *addr, size_t len, int prot);
void *q_os_malloc(size_t size);
void *q_os_calloc(size_t n, size_t size);
void q_os_free(void *p);
size_t q_os_page_size(void);
ssize_t q_os_pread(int fd, void *buf, size_t len, off_t offset); /* no injection */

#endif
