/* seek_table: being written. */
