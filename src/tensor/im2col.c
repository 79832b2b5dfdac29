/* im2col.c - placeholder, being written */
