"""Expire times exactly as Redis 7 computes them: in integer milliseconds, the
overflow checked on now + t before anything is changed.

Redis's two rules (src/expire.c expireGenericCommand, src/t_string.c
getExpireMillisecondsOrReply):
  * EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT accept any 64-bit t, also <= 0 (the key is
    deleted, as already expired); seconds are refused when t * 1000 would leave
    the int64 range, and a relative t when t_ms + now_ms would;
  * SET EX|PX|EXAT|PXAT, SETEX, PSETEX and GETEX refuse t <= 0 and the same
    overflows.
Both reply `ERR invalid expire time in '<cmd>' command` and change nothing.

The engine keeps an expiry as int64 ms since the epoch but takes it as a ttl in
float seconds, exact to the millisecond only below 2**53 ms (year ~287,000).
An absolute time later than EXPIRY_CAP_MS is stored as EXPIRY_CAP_MS: the key
still lives for more than 280,000 years (Redis would keep the exact number,
which PEXPIRETIME shows; lsmkv shows the cap).
"""
import time

from lsmkv.server.args import INT64_MAX, CommandError, to_int

EXPIRY_CAP_MS = 1 << 53


def now_ms():
    """The wall clock in whole milliseconds (Redis's mstime())."""
    return time.time_ns() // 1000000


def invalid(name):
    """The error for an expire time out of range, for command `name`."""
    return CommandError(f"ERR invalid expire time in '{name}' command")


def expire_at_ms(t, unit, now, name):
    """EXPIRE-family: the absolute expiry in ms for argument t (int) of unit
    EX/PX/EXAT/PXAT, Redis's overflow checks; t may be <= 0 (already expired)."""
    if unit in (b"EX", b"EXAT"):
        if t > INT64_MAX // 1000 or t < -(INT64_MAX // 1000):     # C's LLONG_MIN / 1000
            raise invalid(name)
        t *= 1000
    base = now if unit in (b"EX", b"PX") else 0
    if t > INT64_MAX - base:
        raise invalid(name)
    return t + base


def set_expire_ms(arg, unit, now, name):
    """SET/SETEX/PSETEX/GETEX: the absolute expiry in ms for argument arg, which
    must be a positive integer (else Redis's errors)."""
    t = to_int(arg)
    if t <= 0 or (unit in (b"EX", b"EXAT") and t > INT64_MAX // 1000):
        raise invalid(name)
    if unit in (b"EX", b"EXAT"):
        t *= 1000
    if unit in (b"EX", b"PX"):
        if t > INT64_MAX - now:
            raise invalid(name)
        t += now
    return t


def ttl_seconds(at_ms, now=None):
    """The engine's ttl (float seconds from now) for an absolute expiry in ms,
    capped at EXPIRY_CAP_MS; <= 0 when it is not in the future."""
    if now is None:
        now = now_ms()
    return (min(at_ms, EXPIRY_CAP_MS) - now) / 1000.0


def abs_ms(seconds_left, now):
    """The absolute expiry (ms) of a key with `seconds_left` (the engine's ttl),
    None for a key without expiry."""
    if seconds_left is None:
        return None
    return now + int(round(seconds_left * 1000.0))

