/* fuzz_msgs.h - valid message bodies for the fuzz seeds of fuzz_msg and
 * fuzz_broker, made by the encoder (so they follow docs/protocol.md as it
 * changes): a request of 2 u8 samples 1x2x2 for service "s", the ok reply
 * to it, a ready announcing that service, and the small messages. */
#ifndef DQ_TESTS_FUZZ_MSGS_H
#define DQ_TESTS_FUZZ_MSGS_H

#include <stdlib.h>
#include <string.h>

#include "proto/msg.h"

#define FZ_SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static inline void fzm_request(dq_msg_buf *b, uint64_t id)
{
    static const uint8_t px[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    dq_msg_request r;
    memset(&r, 0, sizeof r);
    r.req_id = id;
    strcpy(r.service, "s");
    r.dtype = DQ_DTYPE_U8;
    r.shape[0] = 2, r.shape[1] = 1, r.shape[2] = 2, r.shape[3] = 2;
    r.data = px, r.data_len = sizeof px;
    r.n_outputs = 1;
    strcpy(r.outputs[0], "logits");
    if (dq_msg_encode_request(b, &r, NULL) != DQ_OK) abort();
}

static inline void fzm_reply(dq_msg_buf *b, uint64_t id)
{
    static const float lg[6] = {0.5f, -1, 2, 3, 4, 5};
    dq_msg_reply r;
    memset(&r, 0, sizeof r);
    r.req_id = id;
    r.status = DQ_REPLY_OK;
    r.n_outputs = 1;
    strcpy(r.outputs[0].name, "logits");
    r.outputs[0].ndim = 2, r.outputs[0].shape[0] = 2, r.outputs[0].shape[1] = 3;
    r.outputs[0].data = lg, r.outputs[0].data_len = sizeof lg;
    r.has_teacher = true;
    strcpy(r.teacher.service, "s");
    strcpy(r.teacher.model, "m");
    strcpy(r.teacher.sha256, FZ_SHA);
    if (dq_msg_encode_reply(b, &r, NULL) != DQ_OK) abort();
}

static inline void fzm_ready(dq_msg_buf *b)
{
    dq_msg_ready r;
    memset(&r, 0, sizeof r);
    strcpy(r.teacher.service, "s");
    strcpy(r.teacher.model, "m");
    strcpy(r.teacher.sha256, FZ_SHA);
    r.input[0] = 1, r.input[1] = 2, r.input[2] = 2;
    r.dtypes = 1u << DQ_DTYPE_U8 | 1u << DQ_DTYPE_F32;
    r.n_outputs = 1;
    strcpy(r.outputs[0].name, "logits");
    r.outputs[0].ndim = 1, r.outputs[0].shape[0] = 3;
    r.capacity = 2;
    r.max_batch = 0;
    if (dq_msg_encode_ready(b, &r, NULL) != DQ_OK) abort();
}

#endif
