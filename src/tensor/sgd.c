/* sgd.c - placeholder, being written */
