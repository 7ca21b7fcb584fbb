/*
 * The "none" fuzz engine: a plain main() that feeds files to LLVMFuzzerTestOneInput, so
 * every build (release, ASan+UBSan, MSan, coverage) replays the corpora in ctest.
 *
 *     fuzz_<target> [-q] PATH...
 *
 * Each PATH is a file or a directory; directories are walked recursively in sorted order
 * (names starting with '.' are skipped). Each input's name is printed to stderr before it
 * runs, so the last line before a crash names the culprit (ctest shows it on failure).
 * Exit status: 0 when every input ran, 1 on an unreadable or missing path; a failing input
 * aborts the process (FUZZ_ASSERT or a sanitizer).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_helpers.h"

static int quiet;
static unsigned long n_inputs;
static unsigned long long n_bytes;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        fprintf(stderr, "replay: out of memory\n");
        return 1;
    }
    for (;;) {
        if (len == cap) {
            uint8_t *grown = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                fprintf(stderr, "replay: out of memory reading %s\n", path);
                return 1;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        free(buf);
        fprintf(stderr, "replay: read error on %s\n", path);
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    /* Copy into an exact-size buffer so ASan catches reads past the input's end. */
    uint8_t *exact = malloc(len ? len : 1);
    if (exact == NULL) {
        free(buf);
        fprintf(stderr, "replay: out of memory\n");
        return 1;
    }
    if (len)
        memcpy(exact, buf, len);
    free(buf);
    (void)LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    n_inputs++;
    n_bytes += len;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path);

static int run_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "replay: cannot open directory %s: %s\n", path, strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **grown = realloc(names, ncap * sizeof *names);
            if (grown == NULL) {
                rc = 1;
                break;
            }
            names = grown;
            cap = ncap;
        }
        size_t need = strlen(path) + 1 + strlen(e->d_name) + 1;
        names[n] = malloc(need);
        if (names[n] == NULL) {
            rc = 1;
            break;
        }
        snprintf(names[n], need, "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = run_path(names[i]);
        free(names[i]);
    }
    free(names);
    if (rc)
        fprintf(stderr, "replay: error while walking %s\n", path);
    return rc;
}

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode))
        return run_dir(path);
    if (S_ISREG(st.st_mode))
        return run_file(path);
    fprintf(stderr, "replay: %s: not a file or directory, skipped\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "-q") == 0) {
        quiet = 1;
        first = 2;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [-q] FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    for (int i = first; i < argc; i++)
        if (run_path(argv[i]) != 0)
            return 1;
    fprintf(stderr, "replay: %lu inputs, %llu bytes, no failure\n", n_inputs, n_bytes);
    return 0;
}
