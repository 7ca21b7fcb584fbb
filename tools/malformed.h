/* The malformed-file generator of qorus-model (see malformed.c). */
#ifndef QORUS_TOOLS_MALFORMED_H
#define QORUS_TOOLS_MALFORMED_H

/* Writes the corpus folders under `dir` (created if needed) and, when `write_manifest`,
 * dir/manifest.tsv. Returns 0, or 1 after printing what failed. */
int gen_malformed(const char *dir, int write_manifest);

#endif
