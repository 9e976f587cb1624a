/* scan: being written. */
