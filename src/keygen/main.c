/* main.c - distillq-keygen PATH/NAME: a CURVE key pair as czmq certificate
 * files, PATH/NAME (public, to copy into the broker's --allow-students or
 * --allow-workers directory, or to give clients as --curve-server-cert)
 * and PATH/NAME_secret (mode 0600, for --curve-cert). NAME is the peer's
 * name in the broker's logs, stats and metrics. Format: src/proto/curve.h.
 */
#include <stdio.h>
#include <string.h>

#include "proto/curve.h"

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: distillq-keygen PATH/NAME\n"
               "Writes PATH/NAME (public certificate) and PATH/NAME_secret (secret, mode 0600)\n"
               "in the ZeroMQ (czmq zcert) certificate format. See docs/operations.md.\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("distillq-keygen %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: distillq-keygen PATH/NAME\n");
        return 2;
    }
    dq_err err = {{0}};
    if (dq_curve_keygen(argv[1], &err) != DQ_OK) {
        fprintf(stderr, "distillq-keygen: %s\n", err.msg);
        return 1;
    }
    printf("%s\n%s_secret\n", argv[1], argv[1]);
    return 0;
}
