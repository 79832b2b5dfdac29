/* relu.c - placeholder, being written */
