/* loss_cosine.c - placeholder, being written */
