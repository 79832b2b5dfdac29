/* avgpool1d.c - placeholder, being written */
