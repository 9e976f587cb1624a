/* verify: being written. */
