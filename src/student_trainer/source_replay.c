/* source_replay.c - interim: the replay source lands with the LMDB cache. */
#include "student_trainer/source.h"

dq_status dq_source_replay_new(dq_source_t **out, const dq_source_config *cfg, dq_err *err)
{
    (void)cfg;
    *out = NULL;
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "--replay: the cache is not built yet");
}
