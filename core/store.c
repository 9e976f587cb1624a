/* store: being written. */
