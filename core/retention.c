/* retention: being written. */
