/* archive_writer: being written. */
