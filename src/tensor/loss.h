/* loss.h - the losses of the classic distillation recipes, with gradients.
 *
 * Each loss returns its value in *loss and, when grad is non-NULL, ADDS
 * scale * d(loss)/d(input) into grad, so a weighted sum of losses is simply
 * several calls with their weights as `scale` into the same gradient. The
 * returned *loss is unscaled. Teacher-side tensors get no gradient. grad must
 * have the input's shape. Inputs are checked before grad is touched, so a
 * failing call leaves grad unchanged. Batches must not be empty.
 */
#ifndef DQ_LOSS_H
#define DQ_LOSS_H

#include <stdint.h>

#include "tensor/tensor.h"

/* Cross-entropy with integer labels, mean over the batch.
 * logits [N,K], labels[N] in [0,K) (out of range is DQ_ERR_ARG). */
dq_status dq_loss_cross_entropy(float *loss, dq_tensor *grad, const dq_tensor *logits,
                                const int32_t *labels, float scale, dq_err *err);

/* Soft-target distillation loss as in the PyTorch tutorial:
 *   -sum(softmax(t/T) * log_softmax(s/T)) / N * T^2
 * student, teacher [N,K]; gradient w.r.t. the student logits only:
 *   T * (softmax(s/T) - softmax(t/T)) / N. T must be finite and > 0. */
dq_status dq_loss_kd(float *loss, dq_tensor *grad, const dq_tensor *student,
                     const dq_tensor *teacher, float T, float scale, dq_err *err);

/* Cosine-embedding loss with target 1, mean over the batch:
 *   mean_i (1 - cos(a_i, b_i)); a, b [N,F] (rank >= 2, flattened per sample).
 * Gradient w.r.t. a (the student's features). As PyTorch's
 * cosine_embedding_loss (ATen Loss.cpp, EPSILON = 1e-12f) there is no norm
 * clamp: cos = sum(a*b) / sqrt((sum(a*a) + 1e-12) * (sum(b*b) + 1e-12)). */
dq_status dq_loss_cosine(float *loss, dq_tensor *grad, const dq_tensor *a, const dq_tensor *b,
                         float scale, dq_err *err);

/* Mean squared error over all elements: mean((a - b)^2); gradient w.r.t. a. */
dq_status dq_loss_mse(float *loss, dq_tensor *grad, const dq_tensor *a, const dq_tensor *b,
                      float scale, dq_err *err);

/* Number of correct argmax predictions in logits [N,K] against labels. */
int64_t dq_count_correct(const dq_tensor *logits, const int32_t *labels);

#endif
