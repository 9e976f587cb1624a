/* fsutil: being written. */
