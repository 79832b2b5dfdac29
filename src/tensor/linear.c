/* linear.c - placeholder, being written */
