"""Shared pieces of the command modules: the error type and Redis's argument
parsing (strict 64-bit integers, doubles), in Redis's words."""

NOT_INT = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
SYNTAX = "ERR syntax error"
OVERFLOW = "ERR increment or decrement would overflow"
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class CommandError(Exception):
    """A command's error reply (its text, starting with the error code)."""


def to_int(v, msg=NOT_INT):
    """A strict signed 64-bit integer from a request argument (Redis's string2ll:
    no sign '+', no leading zeros, no spaces)."""
    b = bytes(v)
    try:
        n = int(b)
    except ValueError:
        raise CommandError(msg) from None
    if b"%d" % n != b or not INT64_MIN <= n <= INT64_MAX:
        raise CommandError(msg)
    return n


def to_float(v, msg=NOT_FLOAT):
    """A double from a request argument (Redis's string2ld: no spaces, no nan)."""
    b = bytes(v)
    if not b or b[:1].isspace() or b[-1:].isspace() or len(b) > 5000:
        raise CommandError(msg)
    try:
        x = float(b)
    except ValueError:
        raise CommandError(msg) from None
    if x != x:
        raise CommandError(msg)
    return x
