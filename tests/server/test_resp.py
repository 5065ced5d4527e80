"""lsmkv/server/resp.py: the in-place RESP2 request parser and the reply encoders."""
import random

import pytest

from lsmkv.server import resp
BIG = 1 << 30


def parse_all(data, max_bulk=BIG, cap=None):
    buf = bytearray(data) + bytearray(8)          # trailing room, as a pooled buffer has
    out = []
    pos, need, err = resp.parse(buf, 0, len(data), max_bulk, out)
    return [[bytes(a) for a in args] for args in out], pos, need, err


def test_one_frame_and_pipeline():
    f = resp.command(b"SET", b"k", b"v") + resp.command(b"GET", b"k")
    cmds, pos, need, err = parse_all(f)
    assert cmds == [[b"SET", b"k", b"v"], [b"GET", b"k"]]
    assert pos == len(f) and need == 0 and err is None


@pytest.mark.parametrize("size", [0, 1, 100, 1023, 1024, 5000, 70000])
def test_values_of_every_size_and_binary(size):
    v = bytes(random.Random(size).randrange(256) for _ in range(size))
    f = resp.command(b"SET", b"key", v)
    cmds, pos, _, err = parse_all(f)
    assert cmds == [[b"SET", b"key", v]] and pos == len(f) and err is None


def test_value_containing_crlf_and_star():
    v = b"a\r\n*3\r\n$1\r\nx\r\n"
    f = resp.command(b"SET", b"k", v) + resp.command(b"PING")
    cmds, pos, _, err = parse_all(f)
    assert cmds == [[b"SET", b"k", v], [b"PING"]] and err is None


def test_large_read_gives_memoryviews_into_the_buffer():
    v = b"x" * (resp.SPLIT_MAX + 10)
    buf = bytearray(resp.command(b"SET", b"k", v))
    out = []
    resp.parse(buf, 0, len(buf), BIG, out)
    arg = out[0][2]
    assert isinstance(arg, memoryview) and arg.obj is buf      # not copied
    assert bytes(arg) == v


def test_every_truncation_is_incomplete_not_an_error():
    f = resp.command(b"SET", b"key", b"value" * 3) + resp.command(b"GET", b"key")
    first = len(resp.command(b"SET", b"key", b"value" * 3))
    for cut in range(len(f)):
        cmds, pos, need, err = parse_all(f[:cut])
        assert err is None, cut
        assert pos == (first if cut >= first else 0)
        assert len(cmds) == (1 if cut >= first else 0)


def test_need_announces_the_whole_frame_size():
    f = resp.command(b"SET", b"k", b"v" * 100000)
    _, pos, need, err = parse_all(f[:200])
    assert pos == 0 and err is None and need == len(f)


def test_inline_commands():
    cmds, pos, _, err = parse_all(b"PING\r\nset  a   b\nGET a\r\n\r\n")
    assert cmds == [[b"PING"], [b"set", b"a", b"b"], [b"GET", b"a"]]
    assert err is None and pos == len(b"PING\r\nset  a   b\nGET a\r\n\r\n")


@pytest.mark.parametrize("data,msg", [
    (b"*x\r\n", "ERR Protocol error: invalid multibulk length"),
    (b"*2147483648\r\n", "ERR Protocol error: invalid multibulk length"),
    (b"*+1\r\n", "ERR Protocol error: invalid multibulk length"),
    (b"*01\r\n$4\r\nPING\r\n", "ERR Protocol error: invalid multibulk length"),
    (b"*-0\r\n", "ERR Protocol error: invalid multibulk length"),
    (b"*1\r\n$04\r\nPING\r\n", "ERR Protocol error: invalid bulk length"),
    (b"*1\r\n$+3\r\nPING\r\n", "ERR Protocol error: invalid bulk length"),
    (b"*1\r\n+PING\r\n", "ERR Protocol error: expected '$', got '+'"),
    (b"*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length"),
    (b"*1\r\n$abc\r\n", "ERR Protocol error: invalid bulk length"),
    (b"SET a \"b\r\n", "ERR Protocol error: unbalanced quotes in request"),
    (b"SET a \"b\"c\r\n", "ERR Protocol error: unbalanced quotes in request"),
    (b"SET a 'b\r\n", "ERR Protocol error: unbalanced quotes in request"),
    (b"x" * (resp.MAX_INLINE + 1), "ERR Protocol error: too big inline request"),
])
def test_malformed_frames_error_in_redis_words(data, msg):
    cmds, pos, _, err = parse_all(data)
    assert isinstance(err, resp.ProtocolError) and str(err) == msg


def test_bulk_not_followed_by_crlf_skips_two_bytes_as_redis():
    cmds, pos, _, err = parse_all(b"*1\r\n$3\r\nPINGX\r\n")
    assert cmds == [[b"PIN"]] and err is None


@pytest.mark.parametrize("line,words", [
    (b'set "a b" "c d"', [b"set", b"a b", b"c d"]),
    (b'echo "a\\x00b"', [b"echo", b"a\x00b"]),
    (b"echo 'it\\'s'", [b"echo", b"it's"]),
    (b'echo ""', [b"echo", b""]),
    (b'echo "\\n\\r\\t\\b\\a\\q\\""', [b"echo", b"\n\r\t\b\aq\""]),
    (b"  a\tb  ", [b"a", b"b"]),
    (b"echo 'a\\nb'", [b"echo", b"a\\nb"]),
    (b'echo "x\\xZZ"', [b"echo", b"xxZZ"]),
    (b"", []),
])
def test_inline_split_as_sdssplitargs(line, words):
    assert resp.split_args(line) == words


def test_unauthenticated_limits():
    out = []
    frame = resp.command(*[b"x"] * 11)
    assert str(resp.parse(bytearray(frame), 0, len(frame), BIG, out, unauth=True)[2]) == (
        "ERR Protocol error: unauthenticated multibulk length")
    frame = b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"
    assert str(resp.parse(bytearray(frame), 0, len(frame), BIG, out, unauth=True)[2]) == (
        "ERR Protocol error: unauthenticated bulk length")
    frame = resp.command(*[b"x"] * 10)
    assert resp.parse(bytearray(frame), 0, len(frame), BIG, out, unauth=True)[2] is None


def test_a_frame_is_resumed_not_reparsed():
    """With a Frame, the complete arguments of an incomplete request are taken
    (copied) and parsing goes on from the new bytes only."""
    f = resp.command(b"MSET", *[b"k%d" % i for i in range(2000)]) + resp.command(b"PING")
    buf = bytearray(f)
    fr = resp.Frame()
    out = []
    pos = 0
    for end in list(range(7, len(f), 97)) + [len(f)]:
        pos, need, err = resp.parse(buf, pos, end, BIG, out, frame=fr)
        assert err is None
        if fr.args is not None:
            assert fr.size >= sum(map(len, fr.args)) and not any(isinstance(a, memoryview) for a in fr.args)
    assert [[bytes(a) for a in c] for c in out] == [[b"MSET", *[b"k%d" % i for i in range(2000)]], [b"PING"]]
    assert fr.args is None and pos == len(f)


def test_frames_before_an_error_are_kept():
    f = resp.command(b"PING") + b"*1\r\n!oops\r\n"
    cmds, pos, _, err = parse_all(f)
    assert cmds == [[b"PING"]] and err is not None


def test_bulk_length_over_the_limit_is_refused_from_its_header():
    # only the header has arrived: the refusal must not wait for (or size a buffer for) the value
    cmds, pos, need, err = parse_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000001\r\n", max_bulk=1000000)
    assert str(err) == "ERR Protocol error: invalid bulk length" and need == 0
    cmds, pos, need, err = parse_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n", max_bulk=1000000)
    assert err is None and need > 1000000


def test_fast_path_honours_a_small_max_bulk():
    cmds, pos, need, err = parse_all(resp.command(b"SET", b"k", b"v" * 20), max_bulk=10)
    assert str(err) == "ERR Protocol error: invalid bulk length"


def test_random_garbage_never_raises():
    rnd = random.Random(7)
    alphabet = b"*$\r\n0123456789-abc"
    for _ in range(3000):
        data = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 60)))
        cmds, pos, need, err = parse_all(data)
        assert 0 <= pos <= len(data)
        assert err is None or isinstance(err, resp.ProtocolError)


def test_encoders():
    assert resp.integer(5) == b":5\r\n" and resp.integer(-2) == b":-2\r\n"
    assert resp.integer(10 ** 12) == b":1000000000000\r\n"
    assert resp.bulk(None) == b"$-1\r\n" and resp.bulk(b"ab") == b"$2\r\nab\r\n"
    big = b"x" * resp.GATHER_MIN
    pieces = resp.bulk(big)
    assert isinstance(pieces, list) and pieces[1] is big and b"".join(pieces) == b"$%d\r\n%b\r\n" % (len(big), big)
    assert resp.array([b"a", None]) == b"*2\r\n$1\r\na\r\n$-1\r\n"
    assert resp.error("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"
    assert resp.encode([1, b"x", None, [b"y"]]) == b"*4\r\n:1\r\n$1\r\nx\r\n$-1\r\n*1\r\n$1\r\ny\r\n"
    with pytest.raises(TypeError):
        resp.encode(object())


def test_resumed_parsing_equals_whole_parsing_fuzz():
    """Random pipelines cut at random points and parsed read by read with a Frame
    (the buffer compacted between reads, as the connection does) give the same
    requests as one parse of the whole."""
    rnd = random.Random(11)
    for _ in range(300):
        cmds = [[bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 3, 40, 2000])))
                 for _ in range(rnd.randrange(1, 30))] for _ in range(rnd.randrange(1, 6))]
        data = b"".join(resp.command(*c) for c in cmds)
        cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randrange(1, 12))))
        fr = resp.Frame()
        out = []
        pending = bytearray()
        prev = 0
        for cut in cuts + [len(data)]:
            pending += data[prev:cut]
            prev = cut
            pos, need, err = resp.parse(pending, 0, len(pending), BIG, out, frame=fr)
            assert err is None
            out = [[bytes(a) for a in c] for c in out]      # views die with the compaction
            del pending[:pos]
        assert out == cmds and not pending and fr.args is None
