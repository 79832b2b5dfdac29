/* loss_kd.c - placeholder, being written */
