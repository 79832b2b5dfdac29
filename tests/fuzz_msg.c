/* fuzz_msg.c - libFuzzer target for the wire decoder (src/proto).
 *
 * Any input must decode to DQ_OK or fail with a reason, never crash, leak or
 * read out of bounds (ASan/UBSan). A message that decodes must also satisfy
 * the invariants the broker relies on (data length = shape x dtype size,
 * names NUL-terminated within bounds) and re-encode to bytes that decode to
 * the same header: the encoder and the decoder agree on what is valid.
 * Seeds: one valid body of each message type (tests/fuzz_msgs.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_msgs.h"
#include "fuzz_util.h"
#include "proto/msg.h"

#define s_check fz_check

/* One valid body of each shape, so mutation starts from deep paths. */
static void s_write_seeds(void)
{
    static const struct {
        const char *name;
        dq_msg_type type;
    } simple[] = {{"drain", DQ_MSG_DRAIN}, {"goodbye", DQ_MSG_GOODBYE},
                  {"reannounce", DQ_MSG_REANNOUNCE}};
    static const char json[] = "{\"workers\": 1}";
    dq_msg_buf b = {0};
    fzm_request(&b, 7);
    fz_seed("request", b.data, b.len);
    dq_msg_buf_reset(&b);
    fzm_reply(&b, 7);
    fz_seed("reply", b.data, b.len);
    dq_msg_buf_reset(&b);
    fzm_ready(&b);
    fz_seed("ready", b.data, b.len);
    dq_msg_buf_reset(&b);
    if (dq_msg_encode_error_reply(&b, 7, DQ_REPLY_TIMEOUT, "x", NULL) != DQ_OK) abort();
    fz_seed("error", b.data, b.len);
    dq_msg_buf_reset(&b);
    if (dq_msg_encode_heartbeat(&b, 5, NULL) != DQ_OK) abort();
    fz_seed("heartbeat", b.data, b.len);
    dq_msg_buf_reset(&b);
    if (dq_msg_encode_disconnect(&b, "r", true, NULL) != DQ_OK) abort();
    fz_seed("disconnect", b.data, b.len);
    dq_msg_buf_reset(&b);
    if (dq_msg_encode_stats_request(&b, 1, NULL) != DQ_OK) abort();
    fz_seed("stats-request", b.data, b.len);
    dq_msg_buf_reset(&b);
    if (dq_msg_encode_stats_reply(&b, 1, json, sizeof json - 1, NULL) != DQ_OK) abort();
    fz_seed("stats", b.data, b.len);
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        dq_msg_buf_reset(&b);
        if (dq_msg_encode_simple(&b, simple[i].type, NULL) != DQ_OK) abort();
        fz_seed(simple[i].name, b.data, b.len);
    }
    dq_msg_buf_free(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    FZ_SEEDS_THEN_EXIT(s_write_seeds);
    return 0;
}

static uint64_t s_numel(const int64_t *d, int n)
{
    uint64_t x = 1;
    for (int i = 0; i < n; i++) x *= (uint64_t)d[i];
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dq_msg_decoder_t *dec;
    static dq_msg_buf buf;
    static dq_msg m, m2;
    if (!dec && dq_msg_decoder_new(&dec, NULL) != DQ_OK) abort();
    dq_err err = {{0}};
    if (dq_msg_decode(dec, data, size, &m, &err) != DQ_OK) {
        s_check(err.msg[0] != '\0');
        return 0;
    }
    if (m.type == DQ_MSG_REQUEST) {
        const dq_msg_request *r = &m.u.request;
        s_check(r->data_len == s_numel(r->shape, 4) * dq_msg_dtype_size(r->dtype));
        s_check(strlen(r->service) >= 1 && strlen(r->service) <= DQ_MSG_NAME_MAX);
        s_check(r->n_outputs >= 1 && r->n_outputs <= DQ_MSG_MAX_OUTPUTS);
    } else if (m.type == DQ_MSG_REPLY && m.u.reply.status == DQ_REPLY_OK) {
        for (int i = 0; i < m.u.reply.n_outputs; i++)
            s_check(m.u.reply.outputs[i].data_len ==
                    s_numel(m.u.reply.outputs[i].shape, m.u.reply.outputs[i].ndim) * 4);
    }
    dq_msg_buf_reset(&buf);
    s_check(dq_msg_encode(&buf, &m, &err) == DQ_OK);
    s_check(dq_msg_decode(dec, buf.data, buf.len, &m2, &err) == DQ_OK);
    s_check(m2.type == m.type);
    if (m.type == DQ_MSG_REQUEST) {
        s_check(m2.u.request.req_id == m.u.request.req_id);
        s_check(m2.u.request.data_len == m.u.request.data_len);
        s_check(memcmp(m2.u.request.shape, m.u.request.shape, sizeof m.u.request.shape) == 0);
    }
    return 0;
}
