/* im2col.h placeholder */
