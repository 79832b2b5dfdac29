/* sha256_file.c - a teacher's identity: the SHA-256 of its weights file
 * (OpenSSL EVP), in its own file so that libdistillq's worker side and
 * distillq_sha256_file have it without the model code of teacher.c. */
#include "teacher_worker/teacher.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

dq_status dq_teacher_sha256_file(const char *path, char hex[DQ_MSG_SHA256_HEX + 1],
                                 dq_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return dq_fail(err, DQ_ERR_IO, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char chunk[65536];
    dq_status st = DQ_OK;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        st = dq_fail(err, DQ_ERR_NOMEM, "%s: cannot start SHA-256", path);
        goto done;
    }
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (EVP_DigestUpdate(ctx, chunk, got) != 1) {
            st = dq_fail(err, DQ_ERR_IO, "%s: SHA-256 update failed", path);
            goto done;
        }
    }
    if (ferror(f)) {
        st = dq_fail(err, DQ_ERR_IO, "%s: read failed while hashing", path);
        goto done;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len * 2 != DQ_MSG_SHA256_HEX) {
        st = dq_fail(err, DQ_ERR_IO, "%s: SHA-256 final failed", path);
        goto done;
    }
    for (unsigned int i = 0; i < md_len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[DQ_MSG_SHA256_HEX] = '\0';
done:
    EVP_MD_CTX_free(ctx);
    fclose(f);
    return st;
}
