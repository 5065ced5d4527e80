"""`lsmkv serve`: the Redis protocol (RESP2) over a DB."""
