"""The `lsmkv` command: a db shell."""
