/* teacher_echo.h - the echo teacher's outputs and identity (benches and
 * tests only: distillq-teacher --echo).
 *
 * An echo teacher announces a real model file's input and output shapes but
 * never runs the network: each sample's output row is a cheap hash of the
 * sample's bytes spread over the row, so replies are deterministic (the
 * same sample gives the same bits on every echo worker), batch-invariant
 * (merged and chunked requests answer alike) and cost almost nothing to
 * compute - what a broker bench with hundreds of workers on two cores
 * needs. They must never pass for a real teacher's: the identity's model
 * is "echo:<name>" and its sha256 is the SHA-256 of "distillq-echo\n<name>",
 * which no weights file hashes to, so a student or cache that has seen the
 * real teacher sees a changed teacher.
 */
#ifndef DQ_TEACHER_ECHO_H
#define DQ_TEACHER_ECHO_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "proto/msg.h"

/* Fills id->model and id->sha256 for the echo of model `name`. */
dq_status dq_teacher_echo_identity(dq_msg_teacher *id, const char *name, dq_err *err);

/* dst [n, inner]: output `out` for the n samples of the k requests taken one
 * after another (sample_bytes bytes each in the request's dtype). */
void dq_teacher_echo_rows(float *dst, int64_t inner, int out, const dq_msg_request *const *rs,
                          int k, size_t sample_bytes);

#endif
