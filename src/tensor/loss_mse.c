/* loss_mse.c - placeholder, being written */
