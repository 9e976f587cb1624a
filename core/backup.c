/* backup: being written. */
