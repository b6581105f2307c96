"""Pure conversion rules: no I/O, so every rule can be tested on values alone."""
