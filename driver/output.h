/*
 * The driver's side of the faults of a run (docs/driver.md, "Faults"): output errors,
 * interrupts, a closed pipe. Kept out of main.c so the command itself stays about options
 * and models.
 */
#ifndef QORUS_DRIVER_OUTPUT_H
#define QORUS_DRIVER_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

/* Where generated text goes. */
typedef struct q_output {
    FILE *f;
    const char *name; /* "stdout": names the output in error lines */
    int error;        /* errno of the first failed write, 0 if none */
} q_output;

/* SIGINT and SIGTERM set a flag (checked before every write, i.e. between tokens) instead of
 * killing; a second one kills as usual (SA_RESETHAND). */
void q_out_catch_interrupts(void);

/* The signal that asked to stop (SIGINT, SIGTERM), 0 if none. */
int q_out_stop_signal(void);

/* A q_emit_fn over a q_output: writes and flushes `bytes`; returns non-zero (stop) when an
 * interrupt was caught or the write failed (errno kept in out->error). */
int q_out_emit(void *out, const char *bytes, size_t len);

/* After generation stopped with the emit callback's refusal: if a write failed, prints
 * "qorus: NAME: <strerror>" and returns 1 (a closed pipe: no message, the process ends by
 * SIGPIPE like `yes | head`, or returns 141 if SIGPIPE cannot be raised); if an interrupt
 * stopped it, ends the text with "\n" and returns -1 (the caller prints its stats line and
 * exits with q_out_interrupt_status()); otherwise returns -1. */
int q_out_report(q_output *out);

/* 128 + the stop signal (130 for SIGINT, 143 for SIGTERM), 0 when not interrupted. */
int q_out_interrupt_status(void);

/* End of any command: flushes stdout; a failure prints "qorus: stdout: <strerror>" and
 * turns status 0 into 1. Returns the exit status. */
int q_out_close_stdout(int status);

#endif
