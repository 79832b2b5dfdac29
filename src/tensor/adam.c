/* adam.c - placeholder, being written */
