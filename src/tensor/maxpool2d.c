/* maxpool2d.c - placeholder, being written */
