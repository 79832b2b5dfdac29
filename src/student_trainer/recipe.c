/* recipe.c - combined distillation losses on a student network's outputs. */
#include "student_trainer/recipe.h"

#include <string.h>

#include "tensor/loss.h"

static const char *const s_names[] = {"ce", "kd", "cosine", "regressor"};

dq_recipe dq_recipe_defaults(dq_recipe_kind kind)
{
    dq_recipe r = {.kind = kind, .T = 2.0f, .soft_weight = 0.25f, .hidden_weight = 0.25f,
                   .ce_weight = 0.75f};
    if (kind == DQ_RECIPE_CE) r.ce_weight = 1.0f;
    return r;
}

const char *dq_recipe_name(dq_recipe_kind kind)
{
    return (unsigned)kind < 4 ? s_names[kind] : "?";
}

dq_status dq_recipe_parse(dq_recipe_kind *kind, const char *name, dq_err *err)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, s_names[i]) == 0) {
            *kind = (dq_recipe_kind)i;
            return DQ_OK;
        }
    return dq_fail(err, DQ_ERR_ARG, "--loss: expected ce, kd, cosine or regressor, got '%s'",
                   name);
}

const char *dq_recipe_teacher_output(const dq_recipe *r)
{
    switch (r->kind) {
    case DQ_RECIPE_KD: return "logits";
    case DQ_RECIPE_COSINE:
    case DQ_RECIPE_REGRESSOR: return "features";
    case DQ_RECIPE_CE: break;
    }
    return NULL;
}

dq_status dq_recipe_check(const dq_recipe *r, const dq_net_t *student,
                          const int64_t *teacher_shape, int teacher_ndim, dq_err *err)
{
    const char *name = dq_recipe_teacher_output(r);
    if (!name) return DQ_OK;
    int64_t shape[DQ_MAX_DIMS];
    int nd = dq_net_output_shape(student, name, shape);
    if (nd < 0)
        return dq_fail(err, DQ_ERR_NOT_FOUND, "--loss %s needs the student model %s to have an "
                       "output '%s'", dq_recipe_name(r->kind), dq_net_name(student), name);
    int64_t sn = 1, tn = 1;
    for (int i = 0; i < nd; i++) sn *= shape[i];
    for (int i = 0; i < teacher_ndim; i++) tn *= teacher_shape[i];
    /* cosine compares flattened vectors; the others need equal shapes. */
    bool same = r->kind == DQ_RECIPE_COSINE ? sn == tn : nd == teacher_ndim && sn == tn;
    for (int i = 0; same && r->kind != DQ_RECIPE_COSINE && i < nd; i++)
        same = shape[i] == teacher_shape[i];
    if (!same) {
        dq_tensor a = dq_tensor_view(NULL, nd, shape);
        dq_tensor b = dq_tensor_view(NULL, teacher_ndim, teacher_shape);
        char sa[96], sb[96];
        return dq_fail(err, DQ_ERR_SHAPE, "--loss %s: student %s output '%s' is %s per sample "
                       "but the teacher's is %s", dq_recipe_name(r->kind), dq_net_name(student),
                       name, dq_tensor_shape_str(&a, sa, sizeof sa),
                       dq_tensor_shape_str(&b, sb, sizeof sb));
    }
    return DQ_OK;
}

dq_status dq_recipe_loss(const dq_recipe *r, dq_net_t *student, const int32_t *labels,
                         const float *teacher, float *loss, dq_err *err)
{
    const dq_tensor *logits = dq_net_output(student, "logits");
    dq_tensor *dlogits = dq_net_output_grad(student, "logits");
    float ce = 0, extra = 0;
    DQ_TRY(dq_loss_cross_entropy(&ce, dlogits, logits, labels, r->ce_weight, err));
    const char *name = dq_recipe_teacher_output(r);
    if (name) {
        if (!teacher) return dq_fail(err, DQ_ERR_ARG, "--loss %s needs teacher outputs",
                                     dq_recipe_name(r->kind));
        const dq_tensor *s = dq_net_output(student, name);
        dq_tensor *ds = dq_net_output_grad(student, name);
        /* The teacher's rows have the student's shape (checked up front). */
        dq_tensor t = dq_tensor_view((float *)teacher, s->ndim, s->shape);
        switch (r->kind) {
        case DQ_RECIPE_KD:
            DQ_TRY(dq_loss_kd(&extra, ds, s, &t, r->T, r->soft_weight, err));
            extra *= r->soft_weight;
            break;
        case DQ_RECIPE_COSINE:
            DQ_TRY(dq_loss_cosine(&extra, ds, s, &t, r->hidden_weight, err));
            extra *= r->hidden_weight;
            break;
        case DQ_RECIPE_REGRESSOR:
            DQ_TRY(dq_loss_mse(&extra, ds, s, &t, r->hidden_weight, err));
            extra *= r->hidden_weight;
            break;
        case DQ_RECIPE_CE: break;
        }
    }
    *loss = r->ce_weight * ce + extra;
    return DQ_OK;
}
