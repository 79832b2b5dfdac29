/* safetensors.c - read and write the safetensors format with jansson.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 LE   N, the header length
 *   N bytes  UTF-8 JSON: {"__metadata__": {str: str},
 *                         "<name>": {"dtype": "F32", "shape": [..],
 *                                    "data_offsets": [begin, end]}, ...}
 *            possibly padded with trailing spaces
 *   rest     the data area; offsets are relative to its first byte
 *
 * Writing: the JSON lists tensors in the caller's order, the data area packs
 * them contiguously with no gaps (the Python loader rejects gaps), 8-byte
 * dtypes first, and the header is space-padded so the data area starts at a
 * multiple of 8 - so every tensor is naturally aligned in the file. The file
 * goes to PATH.tmp, is fsynced, then renamed over PATH.
 *
 * Reading: the data area is read into its own 64-byte aligned allocation; a
 * foreign file whose offsets leave a tensor misaligned for its dtype gets
 * that tensor copied into an aligned buffer, so callers may cast data to
 * float* / int64_t* unconditionally. The parsed JSON stays alive for the
 * life of the file handle: tensor names and metadata point into it.
 */
#include "model/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor data is stored and used in host order, which the format fixes as
 * little-endian; a big-endian port would need byte swaps here. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian; this code assumes an LE host");

#define S_MAX_HEADER (100u * 1024u * 1024u) /* same cap as the Python library */

struct dq_st_file {
    char *path;
    json_t *root;        /* owns the strings that names and meta point to */
    int n;
    dq_st_tensor *tensors;
    void **copies;       /* per tensor: aligned copy when misaligned, else NULL */
    int n_meta;
    const char **meta_kv;
    unsigned char *data; /* data area, 64-byte aligned, owned */
    size_t data_len;
};

static const struct {
    const char *name;
    size_t size;
} s_dtypes[] = {
    [DQ_ST_F32] = {"F32", 4},
    [DQ_ST_I64] = {"I64", 8},
    [DQ_ST_U64] = {"U64", 8},
    [DQ_ST_F64] = {"F64", 8},
};
_Static_assert(sizeof s_dtypes / sizeof s_dtypes[0] == DQ_ST_DTYPE_COUNT,
               "every dq_st_dtype needs a name and size");

/* Element count of a shape, or -1 when a dim is negative or the product
 * (times elem) would overflow int64. */
static int64_t s_numel(const int64_t *shape, int ndim, size_t elem)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] > 0 && n > INT64_MAX / (int64_t)elem / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

static size_t s_round_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

/* ---- writing ------------------------------------------------------------- */

static dq_status s_check_inputs(const char *path, const dq_st_tensor *t, int n,
                                const char *const *meta_kv, int n_meta, dq_err *err)
{
    if (n < 0 || n_meta < 0 || (n > 0 && !t) || (n_meta > 0 && !meta_kv))
        return dq_fail(err, DQ_ERR_ARG, "%s: bad tensor or metadata count", path);
    for (int i = 0; i < n_meta; i++)
        if (!meta_kv[2 * i] || !meta_kv[2 * i + 1])
            return dq_fail(err, DQ_ERR_ARG, "%s: metadata pair %d has a NULL key or value",
                           path, i);
    for (int i = 0; i < n; i++) {
        const char *nm = t[i].name;
        if (!nm || !strcmp(nm, "__metadata__"))
            return dq_fail(err, DQ_ERR_ARG, "%s: tensor %d has an invalid name '%s'", path, i,
                           nm ? nm : "(null)");
        if ((int)t[i].dtype < 0 || t[i].dtype >= DQ_ST_DTYPE_COUNT)
            return dq_fail(err, DQ_ERR_ARG, "%s: tensor '%s' has unknown dtype %d", path, nm,
                           (int)t[i].dtype);
        if (t[i].ndim < 0 || t[i].ndim > DQ_ST_MAX_DIMS)
            return dq_fail(err, DQ_ERR_ARG, "%s: tensor '%s' has rank %d outside 0..%d", path,
                           nm, t[i].ndim, DQ_ST_MAX_DIMS);
        size_t es = s_dtypes[t[i].dtype].size;
        int64_t numel = s_numel(t[i].shape, t[i].ndim, es);
        if (numel < 0)
            return dq_fail(err, DQ_ERR_ARG, "%s: tensor '%s' has an invalid shape", path, nm);
        if ((uint64_t)numel * es != t[i].nbytes)
            return dq_fail(err, DQ_ERR_ARG,
                           "%s: tensor '%s' has %zu bytes but its shape and dtype need %llu",
                           path, nm, t[i].nbytes, (unsigned long long)numel * es);
        if (t[i].nbytes > 0 && !t[i].data)
            return dq_fail(err, DQ_ERR_ARG, "%s: tensor '%s' has no data", path, nm);
        for (int j = 0; j < i; j++)
            if (!strcmp(t[j].name, nm))
                return dq_fail(err, DQ_ERR_ARG, "%s: tensor name '%s' appears twice", path,
                               nm);
    }
    return DQ_OK;
}

/* Data-area position of each tensor: 8-byte dtypes first, then 4-byte ones,
 * each group in the caller's order, packed without gaps. */
static void s_layout(const dq_st_tensor *t, int n, uint64_t *begin)
{
    uint64_t off = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            int wide = s_dtypes[t[i].dtype].size == 8;
            if (wide != (pass == 0)) continue;
            begin[i] = off;
            off += t[i].nbytes;
        }
}

/* Builds the compact JSON header into *out (malloc'd by jansson, caller
 * frees). Fails with DQ_ERR_ARG for strings that are not valid UTF-8. */
static dq_status s_header_json(char **out, const char *path, const dq_st_tensor *t, int n,
                               const uint64_t *begin, const char *const *meta_kv, int n_meta,
                               dq_err *err)
{
    *out = NULL;
    json_t *root = json_object();
    if (!root) goto nomem;
    if (n_meta > 0) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta)) goto nomem;
        for (int i = 0; i < n_meta; i++) {
            json_t *v = json_string(meta_kv[2 * i + 1]);
            /* set_new rejects a NULL value or a key that is not UTF-8. */
            if (json_object_set_new(meta, meta_kv[2 * i], v)) {
                json_decref(root);
                return dq_fail(err, DQ_ERR_ARG, "%s: metadata '%s' is not valid UTF-8", path,
                               meta_kv[2 * i]);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; shape && d < t[i].ndim; d++)
            if (json_array_append_new(shape, json_integer(t[i].shape[d]))) {
                json_decref(shape);
                shape = NULL;
            }
        if (!shape) goto nomem;
        /* "o" steals shape's reference, also when packing fails. */
        json_t *entry = json_pack("{s:s, s:o, s:[I,I]}", "dtype", s_dtypes[t[i].dtype].name,
                                  "shape", shape, "data_offsets", (json_int_t)begin[i],
                                  (json_int_t)(begin[i] + t[i].nbytes));
        if (!entry) goto nomem;
        if (json_object_set_new(root, t[i].name, entry)) {
            json_decref(root);
            return dq_fail(err, DQ_ERR_ARG, "%s: tensor name '%s' is not valid UTF-8", path,
                           t[i].name);
        }
    }
    *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!*out) return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot build the safetensors header",
                              path);
    return DQ_OK;
nomem:
    json_decref(root);
    return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot build the safetensors header", path);
}

static dq_status s_fwrite(FILE *f, const void *p, size_t len, const char *tmp, dq_err *err)
{
    if (len > 0 && fwrite(p, 1, len, f) != len)
        return dq_fail(err, DQ_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return DQ_OK;
}

dq_status dq_st_write(const char *path, const dq_st_tensor *tensors, int n,
                      const char *const *meta_kv, int n_meta, dq_err *err)
{
    DQ_TRY(s_check_inputs(path, tensors, n, meta_kv, n_meta, err));
    uint64_t *begin = calloc((size_t)n + 1, sizeof *begin);
    if (!begin) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    s_layout(tensors, n, begin);
    char *json = NULL;
    dq_status hst = s_header_json(&json, path, tensors, n, begin, meta_kv, n_meta, err);
    if (hst) {
        free(begin);
        return hst;
    }
    size_t jlen = strlen(json);
    size_t hlen = s_round_up(jlen, 8); /* 8 + hlen keeps the data area 8-aligned */
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));

    dq_status st = DQ_OK;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    FILE *f = NULL;
    if (!tmp) {
        st = dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    f = fopen(tmp, "wb");
    if (!f) {
        st = dq_fail(err, DQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    static const char spaces[8] = "        ";
    st = s_fwrite(f, lenbuf, 8, tmp, err);
    if (!st) st = s_fwrite(f, json, jlen, tmp, err);
    if (!st) st = s_fwrite(f, spaces, hlen - jlen, tmp, err);
    for (int pass = 0; pass < 2 && !st; pass++)
        for (int i = 0; i < n && !st; i++)
            if ((s_dtypes[tensors[i].dtype].size == 8) == (pass == 0))
                st = s_fwrite(f, tensors[i].data, tensors[i].nbytes, tmp, err);
    if (!st && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = dq_fail(err, DQ_ERR_IO, "%s: flush failed: %s", tmp, strerror(errno));
    int close_rc = fclose(f);
    f = NULL;
    if (!st && close_rc != 0)
        st = dq_fail(err, DQ_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = dq_fail(err, DQ_ERR_IO, "cannot rename %s to %s: %s", tmp, path,
                     strerror(errno));
    if (st) remove(tmp);
out:
    free(tmp);
    free(json);
    free(begin);
    return st;
}

/* ---- reading ------------------------------------------------------------- */

void dq_st_close(dq_st_file_t **pf)
{
    if (!pf || !*pf) return;
    dq_st_file_t *f = *pf;
    for (int i = 0; f->copies && i < f->n; i++) free(f->copies[i]);
    free(f->copies);
    free(f->tensors);
    free(f->meta_kv);
    free(f->data);
    json_decref(f->root);
    free(f->path);
    free(f);
    *pf = NULL;
}

/* Reads exactly len bytes at the current position; `what` and the file
 * offset go into the message on a short read. */
static dq_status s_read(FILE *fp, void *buf, size_t len, const char *path, uint64_t off,
                        const char *what, dq_err *err)
{
    size_t got = len ? fread(buf, 1, len, fp) : 0;
    if (got == len) return DQ_OK;
    if (ferror(fp))
        return dq_fail(err, DQ_ERR_IO, "%s: read error in %s at byte %llu: %s", path, what,
                       (unsigned long long)(off + got), strerror(errno));
    return dq_fail(err, DQ_ERR_FORMAT, "%s: truncated %s at byte %llu (%zu of %zu bytes)",
                   path, what, (unsigned long long)(off + got), got, len);
}

static dq_status s_parse_meta(dq_st_file_t *f, json_t *meta, dq_err *err)
{
    if (!json_is_object(meta))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
    size_t n = json_object_size(meta);
    f->meta_kv = calloc(2 * n + 1, sizeof *f->meta_kv);
    if (!f->meta_kv) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", f->path);
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return dq_fail(err, DQ_ERR_FORMAT, "%s: __metadata__ value '%s' is not a string",
                           f->path, key);
        f->meta_kv[2 * f->n_meta] = key;
        f->meta_kv[2 * f->n_meta + 1] = json_string_value(v);
        f->n_meta++;
    }
    return DQ_OK;
}

/* Validates one header entry and fills *t; data is set later. */
static dq_status s_parse_entry(dq_st_file_t *f, const char *name, json_t *e, uint64_t hdr_end,
                               dq_st_tensor *t, uint64_t *begin, dq_err *err)
{
    const char *p = f->path;
    if (!json_is_object(e))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", p,
                       name);
    json_t *dt = json_object_get(e, "dtype");
    json_t *sh = json_object_get(e, "shape");
    json_t *of = json_object_get(e, "data_offsets");
    const char *missing = !dt ? "dtype" : !sh ? "shape" : !of ? "data_offsets" : NULL;
    if (missing)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", p, name, missing);
    if (!json_is_string(dt))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", p, name);
    const char *dts = json_string_value(dt);
    int dtype = -1;
    for (int i = 0; i < DQ_ST_DTYPE_COUNT; i++)
        if (!strcmp(dts, s_dtypes[i].name)) dtype = i;
    if (dtype < 0)
        return dq_fail(err, DQ_ERR_UNSUPPORTED,
                       "%s: tensor '%s' has dtype %s; only F32, F64, I64 and U64 are supported", p,
                       name, dts);
    size_t es = s_dtypes[dtype].size;

    if (!json_is_array(sh))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor '%s': shape is not an array", p, name);
    size_t nd = json_array_size(sh);
    if (nd > DQ_ST_MAX_DIMS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dims (at most %d)", p,
                       name, nd, DQ_ST_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t d = 0; d < nd; d++) {
        json_t *v = json_array_get(sh, d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return dq_fail(err, DQ_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] is not a non-negative integer", p,
                           name, d);
        t->shape[d] = json_integer_value(v);
    }
    int64_t numel = s_numel(t->shape, t->ndim, es);
    if (numel < 0)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor '%s': shape is too large", p, name);

    json_t *b = json_array_get(of, 0), *en = json_array_get(of, 1);
    if (!json_is_array(of) || json_array_size(of) != 2 || !json_is_integer(b) ||
        !json_is_integer(en) || json_integer_value(b) < 0 || json_integer_value(en) < 0)
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets is not a pair of non-negative integers",
                       p, name);
    uint64_t ob = (uint64_t)json_integer_value(b), oe = (uint64_t)json_integer_value(en);
    if (oe < ob)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end "
                       "before begin", p, name, (unsigned long long)ob, (unsigned long long)oe);
    if (oe > f->data_len)
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] (file bytes %llu..%llu) "
                       "run past the end of the %zu-byte data area (file is %llu bytes)",
                       p, name, (unsigned long long)ob, (unsigned long long)oe,
                       (unsigned long long)(hdr_end + ob), (unsigned long long)(hdr_end + oe),
                       f->data_len, (unsigned long long)(hdr_end + f->data_len));
    if (oe - ob != (uint64_t)numel * es)
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s "
                       "x %lld elements need %llu", p, name, (unsigned long long)ob,
                       (unsigned long long)oe, (unsigned long long)(oe - ob), dts,
                       (long long)numel, (unsigned long long)numel * es);
    t->name = name;
    t->dtype = (dq_st_dtype)dtype;
    t->nbytes = (size_t)(oe - ob);
    *begin = ob;
    return DQ_OK;
}

static dq_status s_parse_header(dq_st_file_t *f, const char *hdr, size_t hlen, dq_err *err)
{
    json_error_t je;
    f->root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!f->root)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: invalid JSON header at byte %d: %s", f->path,
                       8 + je.position, je.text);
    if (!json_is_object(f->root))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: JSON header is not an object", f->path);
    size_t cap = json_object_size(f->root) + 1;
    f->tensors = calloc(cap, sizeof *f->tensors);
    f->copies = calloc(cap, sizeof *f->copies);
    uint64_t *begin = calloc(cap, sizeof *begin);
    if (!f->tensors || !f->copies || !begin) {
        free(begin);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", f->path);
    }
    dq_status st = DQ_OK;
    const char *key;
    json_t *v;
    json_object_foreach(f->root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            st = s_parse_meta(f, v, err);
        } else {
            st = s_parse_entry(f, key, v, 8 + hlen, &f->tensors[f->n], &begin[f->n], err);
            if (!st) f->n++;
        }
        if (st) break;
    }
    /* Point at the data; copy tensors whose start is misaligned for the dtype. */
    for (int i = 0; !st && i < f->n; i++) {
        dq_st_tensor *t = &f->tensors[i];
        size_t es = s_dtypes[t->dtype].size;
        t->data = f->data + begin[i];
        if (begin[i] % es == 0) continue;
        f->copies[i] = aligned_alloc(64, s_round_up(t->nbytes, 64));
        if (!f->copies[i]) {
            st = dq_fail(err, DQ_ERR_NOMEM, "%s: tensor '%s': out of memory", f->path,
                         t->name);
            break;
        }
        memcpy(f->copies[i], t->data, t->nbytes);
        t->data = f->copies[i];
    }
    free(begin);
    return st;
}

dq_status dq_st_open(dq_st_file_t **out, const char *path, dq_err *err)
{
    *out = NULL;
    dq_st_file_t *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    }
    dq_status st = DQ_OK;
    char *hdr = NULL;
    FILE *fp = fopen(path, "rb");
    struct stat sb;
    if (!fp) {
        st = dq_fail(err, errno == ENOENT ? DQ_ERR_NOT_FOUND : DQ_ERR_IO, "%s: cannot open: %s",
                     path, strerror(errno));
        goto out;
    }
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = dq_fail(err, DQ_ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize < 8) {
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: file is %llu bytes, too short for the 8-byte "
                     "header length", path, (unsigned long long)fsize);
        goto out;
    }
    unsigned char lb[8];
    if ((st = s_read(fp, lb, 8, path, 0, "header length", err))) goto out;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)lb[i] << (8 * i);
    if (hlen > S_MAX_HEADER || hlen > fsize - 8) {
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: header length %llu at byte 0 exceeds %s "
                     "(file is %llu bytes)", path, (unsigned long long)hlen,
                     hlen > S_MAX_HEADER ? "the 100 MB limit" : "the file size",
                     (unsigned long long)fsize);
        goto out;
    }
    f->data_len = (size_t)(fsize - 8 - hlen);
    hdr = malloc(hlen + 1);
    f->data = aligned_alloc(64, s_round_up(f->data_len, 64) + 64); /* never NULL data */
    if (!hdr || !f->data) {
        st = dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, f->data_len);
        goto out;
    }
    if ((st = s_read(fp, hdr, hlen, path, 8, "JSON header", err))) goto out;
    if ((st = s_read(fp, f->data, f->data_len, path, 8 + hlen, "data area", err))) goto out;
    st = s_parse_header(f, hdr, hlen, err);
out:
    free(hdr);
    if (fp) fclose(fp);
    if (st) dq_st_close(&f);
    *out = f;
    return st;
}

int dq_st_count(const dq_st_file_t *f)
{
    return f->n;
}

const dq_st_tensor *dq_st_at(const dq_st_file_t *f, int i)
{
    return i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const dq_st_tensor *dq_st_find(const dq_st_file_t *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *dq_st_meta(const dq_st_file_t *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_kv[2 * i], key)) return f->meta_kv[2 * i + 1];
    return NULL;
}

const char *dq_st_path(const dq_st_file_t *f)
{
    return f->path;
}
