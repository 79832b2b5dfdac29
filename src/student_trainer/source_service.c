/* source_service.c - interim: the service source lands with the client library. */
#include "student_trainer/source.h"

dq_status dq_source_service_new(dq_source_t **out, const dq_source_config *cfg, dq_err *err)
{
    (void)cfg;
    *out = NULL;
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "--teacher: service distillation is not built yet");
}
