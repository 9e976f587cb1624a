/* lock: being written. */
