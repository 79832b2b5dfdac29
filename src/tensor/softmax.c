/* softmax.c - placeholder, being written */
