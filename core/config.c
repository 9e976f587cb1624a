/* config: being written. */
