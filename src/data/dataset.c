/* dataset.c - the lifetime of a dq_dataset: truncate and free.
 *
 * Its own file below the readers (idx.c, cifar.c), which free a half-loaded
 * dataset on failure, and below dataset_dir.c, which calls the readers: so
 * the readers do not depend on the directory search that depends on them.
 */
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>

void dq_dataset_truncate(dq_dataset *ds, int64_t n)
{
    if (n <= 0 || n >= ds->n) return;
    ds->n = n; /* the tail stays allocated; free releases it */
}

void dq_dataset_free(dq_dataset *ds)
{
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}
