/* recipe.h - the distillation recipes of the PyTorch tutorial as one loss.
 *
 *   ce         ce_weight * CE(student logits, labels)    (ce_weight 1 here)
 *   kd         soft_weight * KD_T(student logits, teacher logits)
 *              + ce_weight * CE                          (T 2, 0.25 / 0.75)
 *   cosine     hidden_weight * (1 - cos(student features, teacher features))
 *              + ce_weight * CE                          (0.25 / 0.75)
 *   regressor  hidden_weight * MSE(student regressor output, teacher feature map)
 *              + ce_weight * CE                          (0.25 / 0.75)
 *
 * The student's outputs are read from its network by name ("logits",
 * "features") and the gradients written into its output gradients, so the
 * trainer only runs forward, this, backward.
 */
#ifndef DQ_RECIPE_H
#define DQ_RECIPE_H

#include <stdint.h>

#include "model/net.h"

typedef enum { DQ_RECIPE_CE, DQ_RECIPE_KD, DQ_RECIPE_COSINE, DQ_RECIPE_REGRESSOR } dq_recipe_kind;

typedef struct {
    dq_recipe_kind kind;
    float T;             /* kd temperature */
    float soft_weight;   /* kd */
    float hidden_weight; /* cosine, regressor */
    float ce_weight;
} dq_recipe;

/* The tutorial's defaults for a kind (ce: ce_weight 1). */
dq_recipe dq_recipe_defaults(dq_recipe_kind kind);

/* "ce", "kd", "cosine", "regressor" <-> kind; parse fails with DQ_ERR_ARG. */
const char *dq_recipe_name(dq_recipe_kind kind);
dq_status dq_recipe_parse(dq_recipe_kind *kind, const char *name, dq_err *err);

/* The teacher output the recipe needs ("logits" or "features"); NULL for ce. */
const char *dq_recipe_teacher_output(const dq_recipe *r);

/* Checks that the student has the output the recipe reads and that its
 * per-sample shape equals the teacher's (teacher_shape, teacher_ndim). */
dq_status dq_recipe_check(const dq_recipe *r, const dq_net_t *student,
                          const int64_t *teacher_shape, int teacher_ndim, dq_err *err);

/* Computes the loss of the batch whose forward just ran in `student`, writes
 * its gradients into the student's output gradients (which the caller zeroed
 * with dq_net_zero_grad) and returns the total in *loss. teacher is the
 * teacher's output for the same n samples (NULL for ce). */
dq_status dq_recipe_loss(const dq_recipe *r, dq_net_t *student, const int32_t *labels,
                         const float *teacher, float *loss, dq_err *err);

#endif
