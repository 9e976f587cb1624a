/* manifest: being written. */
