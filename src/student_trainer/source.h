/* source.h - where the trainer's batches and their teacher outputs come from.
 *
 * The batch path is dataset -> batcher -> teacher -> trainer. A source hands
 * the trainer batch after batch of an epoch, strictly in order, each with the
 * (ensemble-averaged) teacher output the recipe needs:
 *   plain    no teacher (cross-entropy)
 *   local    teacher networks in this process, run just before each step
 *            (conventional distillation)
 *   service  teacher services behind a broker, prefetched K batches ahead by
 *            a reader thread (service distillation; source_service.c)
 *   replay   teacher outputs read from the broker's LMDB cache
 * Because batch content depends only on (seed, epoch, index) and teacher
 * outputs only on the batch, every source yields the same bytes.
 */
#ifndef DQ_SOURCE_H
#define DQ_SOURCE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "data/dataset.h"
#include "model/net.h"
#include "student_trainer/batcher.h"

#define DQ_SOURCE_MAX_TEACHERS 8

typedef struct {
    int64_t index;    /* batch index within the epoch */
    int64_t n;        /* samples */
    uint8_t *pix;     /* n x c x h x w raw pixels (augmented) */
    int32_t *labels;  /* n */
    float *teacher;   /* n x teacher_floats, NULL without a teacher */
} dq_train_batch;

/* What the teacher side produces per sample. */
typedef struct {
    const char *output;                 /* output name, NULL: no teacher */
    int ndim;
    int64_t shape[DQ_MAX_DIMS];         /* per sample */
    int64_t floats;                     /* product of shape */
} dq_teacher_shape;

typedef struct dq_source dq_source_t;

/* Options shared by the sources. */
typedef struct {
    const dq_dataset *train;
    uint64_t seed;
    int64_t batch;
    bool augment;
    const char *output;                 /* teacher output wanted, NULL: none */
    int n_teachers;
    const char *teachers[DQ_SOURCE_MAX_TEACHERS]; /* local: "M:W"; service: URL */
    float weights[DQ_SOURCE_MAX_TEACHERS];        /* ensemble weights (sum normalised) */
    int64_t inflight;                   /* service: batches kept at the teachers */
    int64_t inflight_bytes;             /* service: bound on what those batches hold
                                         * (inputs, request copies, outputs); 0: 256 MiB */
    int64_t timeout_ms;                 /* service: give up after this long unserved */
    int64_t epochs;                     /* service: epochs of the run, so the reader
                                         * sends the next epoch's first batches ahead
                                         * (0: never past the started epoch) */
    bool allow_teacher_change;          /* service */
    const char *client_name;            /* service: fair-sharing name (NULL: none) */
    const char *curve_server_cert;      /* service: CURVE, both or neither */
    const char *curve_cert;
    const char *replay_dir;             /* replay */
    int n_replay_teachers;              /* replay: 0: the cache's only teacher; else */
    const char *replay_teachers[DQ_SOURCE_MAX_TEACHERS]; /* the sha256 (prefix) of each,
                                         * blended in this order with weights[] */
    int rank, ranks;                    /* data-parallel: this rank's shard of every
                                         * batch (shard.h); ranks <= 1: whole batches */
    dq_device teacher_device;           /* local: where the teachers' forward runs */
    FILE *log;
} dq_source_config;

struct dq_source {
    const char *kind;
    dq_teacher_shape tshape;
    /* Positions the source at batch `first` of `epoch`. Resets prefetching,
     * except (service) where the trainer left off: batches sent ahead stay. */
    dq_status (*start)(dq_source_t *s, int64_t epoch, int64_t first, dq_err *err);
    /* The next batch in order, valid until the next call; *out NULL at the end
     * of the epoch. */
    dq_status (*next)(dq_source_t *s, dq_train_batch **out, dq_err *err);
    void (*destroy)(dq_source_t *s);
};

/* Plain (cfg->n_teachers == 0) or local-teacher source. */
dq_status dq_source_local_new(dq_source_t **out, const dq_source_config *cfg, dq_err *err);

/* Service source: a reader thread keeps cfg->inflight batches at the
 * teacher services (source_service.c). */
dq_status dq_source_service_new(dq_source_t **out, const dq_source_config *cfg, dq_err *err);

/* Replay source: teacher outputs from the LMDB cache in cfg->replay_dir,
 * opened read-only (source_replay.c). */
dq_status dq_source_replay_new(dq_source_t **out, const dq_source_config *cfg, dq_err *err);

/* dst = w * src (first) or dst += w * src, the one ensemble formula every
 * source uses so they agree bit for bit. */
void dq_source_blend(float *dst, const float *src, int64_t n, float w, bool first);

/* Frees the source and sets *s to NULL. */
void dq_source_destroy(dq_source_t **s);

#endif
