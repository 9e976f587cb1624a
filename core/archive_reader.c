/* archive_reader: being written. */
