/* index: being written. */
