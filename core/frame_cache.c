/* frame_cache: being written. */
