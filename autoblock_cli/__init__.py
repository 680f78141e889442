"""The `autoblock` command: the autoblock API from a terminal (block, list, show, unblock, status, history)."""
