/* json_strict: being written. */
