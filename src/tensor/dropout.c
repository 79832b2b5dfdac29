/* dropout.c - placeholder, being written */
