/* loss_xent.c - placeholder, being written */
