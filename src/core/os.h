/*
 * The library's only doors to the OS for memory, files and threads. Each call counts toward
 * the test hook of qorus_testing.h, which can make the Nth one fail (open/mmap/mprotect return
 * -1 / MAP_FAILED with errno ENOMEM, the heap functions NULL, q_os_thread_create EAGAIN).
 * Every module of the library allocates and starts threads through these, never
 * malloc/mmap/pthread_create directly.
 */
#ifndef QORUS_OS_H
#define QORUS_OS_H

#include <pthread.h>
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

/* Starts a joinable thread running start(arg) with every signal blocked, so SIGINT and the
 * like go to the application's threads, never to the library's. Returns 0 or an errno value
 * (EAGAIN when the failure hook fires); on failure no thread exists. */
int q_os_thread_create(pthread_t *thread, void *(*start)(void *), void *arg);
/* Waits for a thread from q_os_thread_create to return. Returns 0 or an errno value. */
int q_os_thread_join(pthread_t thread);

#endif
