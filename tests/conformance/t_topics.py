"""§6 Topics and filters (the rules table, each rule accepted and rejected;
matching of * and >), §7 Delivery and ordering."""
import wire
from harness import (ERR, check, closes, delivers, describe, eq, kind, publish_acked, sub, test)


def _accepts_topic(ctx, topic):
    """PUBLISH to topic with req: None if accepted, else a description."""
    c = ctx.client()
    c.send_raw(wire.frame_bytes(wire.f_bytes(3, wire.f_bytes(1, topic) + wire.f_bytes(2, b"x")) +
                                wire.f_varint(14, 1)))
    f = c.recv()
    if kind(f) == "ack":
        return None
    return describe(f)


def _rejects_topic(ctx, topic):
    c = ctx.client()
    c.send_raw(wire.frame_bytes(wire.f_bytes(3, wire.f_bytes(1, topic) + wire.f_bytes(2, b"x")) +
                                wire.f_varint(14, 1)))
    try:
        closes(c, ERR["ERR_INVALID_TOPIC"], ref=1)
        return None
    except AssertionError as e:
        return str(e)


def _accepts_filter(ctx, filt):
    c = ctx.client()
    c.send_raw(wire.frame_bytes(wire.f_bytes(4, wire.f_varint(1, 1) + wire.f_bytes(2, filt)) +
                                wire.f_varint(14, 1)))
    f = c.recv()
    if kind(f) == "ack":
        return None
    return describe(f)


def _rejects_filter(ctx, filt):
    c = ctx.client()
    c.send_raw(wire.frame_bytes(wire.f_bytes(4, wire.f_varint(1, 1) + wire.f_bytes(2, filt)) +
                                wire.f_varint(14, 1)))
    f = c.recv()
    if kind(f) == "ack":
        return "accepted (ACK)"
    if kind(f) != "error" or f.error.code != ERR["ERR_INVALID_TOPIC"]:
        return "got %s, want ERROR ERR_INVALID_TOPIC" % describe(f)
    try:
        rest = c.wait_eof()
    except wire.Timeout:
        return "connection stayed open after the ERROR"
    if rest:
        return "frames after the ERROR: %s" % [describe(f) for f in rest]
    return None


def rule(ctx, accept, reject, accepts, rejects):
    bad = []
    for v in accept:
        r = accepts(ctx, v)
        if r:
            bad.append("%s refused (%s)" % (_short(v), r))
    for v in reject:
        r = rejects(ctx, v)
        if r:
            bad.append("%s: %s" % (_short(v), r))
    check(not bad, "; ".join(bad))


def _short(v):
    s = repr(v)
    return s if len(s) < 40 else s[:24] + "...(%d bytes)" % len(_b(v))


def _b(s):
    return s.encode() if isinstance(s, str) else s


# -------------------------------------------------------------- topics

@test("s06_topic_length")
def _(ctx):
    """Topic length 1 to 255 bytes (bytes, not characters)."""
    p = ctx.topic()
    t255 = p + "." + "a" * (254 - len(p))
    rule(ctx, ["a", t255, "é" * 127 + "a"], ["", t255 + "a", "é" * 128], _accepts_topic,
         _rejects_topic)


@test("s06_topic_tokens")
def _(ctx):
    """Tokens non-empty: no leading or trailing '.', no '..'."""
    p = ctx.topic()
    rule(ctx, [p + ".a.b.c", p + ".x"], [".a", p + ".", p + "..b", ".", "..", p + ".a..b"],
         _accepts_topic, _rejects_topic)


@test("s06_topic_bytes")
def _(ctx):
    """No whitespace or control characters (0x01-0x20, 0x7f; NUL has its own test)
    anywhere; every other
    byte is allowed, including UTF-8 and bytes the broker does not validate."""
    p = ctx.topic()
    bad = [_b(p) + bytes([c]) + b"x" for c in list(range(0x01, 0x21)) + [0x7f]]  # NUL: below
    bad += [b" " + _b(p), _b(p) + b"\t", _b(p) + b"\n"]
    good = [_b(p) + b".!~\"#$%&'()+,-/:;<=?@[\\]^_`{|}", _b(p) + ".Grüße.日本".encode(),
            _b(p) + b".\x80\xff\xfe", _b(p) + b".UPPER"]
    rule(ctx, good, bad, _accepts_topic, _rejects_topic)


@test("s06_topic_no_wildcards")
def _(ctx):
    """'*' and '>' are not allowed in a topic, as a token or inside one."""
    p = ctx.topic()
    rule(ctx, [p + ".x"], ["*", ">", p + ".*", p + ".>", p + ".a*", p + ".>b", p + ".*.x",
                           p + ".a>b"], _accepts_topic, _rejects_topic)


# -------------------------------------------------------------- filters

@test("s06_filter_length")
def _(ctx):
    p = ctx.topic()
    f255 = p + "." + "a" * (254 - len(p))
    rule(ctx, ["a", f255, p + ".*." + "b" * (252 - len(p))], ["", f255 + "a"],
         _accepts_filter, _rejects_filter)


@test("s06_filter_tokens")
def _(ctx):
    p = ctx.topic()
    rule(ctx, [p + ".a.b"], [".a", p + ".", p + "..b", ".", ".*", "*.", ">."],
         _accepts_filter, _rejects_filter)


@test("s06_filter_bytes")
def _(ctx):
    p = ctx.topic()
    bad = [_b(p) + bytes([c]) + b"x" for c in list(range(0x01, 0x21)) + [0x7f]]  # NUL: below
    good = [_b(p) + ".Grüße.*".encode(), _b(p) + b".!~#$%&()+,-/:;<=?@[]^_`{|}.>"]
    rule(ctx, good, bad, _accepts_filter, _rejects_filter)


@test("s06_filter_wildcards")
def _(ctx):
    """'*' and '>' only as a whole token; '>' only as the last token."""
    p = ctx.topic()
    good = ["*", ">", p + ".*", "*." + p, p + ".*.c", p + ".>", "*.>", p + ".*.>", "*.*.*"]
    bad = [p + "*", "*" + p, p + ".a*", p + ".*a", ">." + p, p + ".>.b", p + ".a>", p + ".>b",
           ">>", "**", p + ".>.>", p + ".>.*"]
    rule(ctx, good, bad, _accepts_filter, _rejects_filter)


@test("s06_nul_in_topic_and_filter")
def _(ctx):
    """A NUL byte inside a topic or filter is ERR_INVALID_TOPIC (closes), and a
    subscription to "a\\0b" is not accepted (no ACK before the ERROR)."""
    p = _b(ctx.topic())
    rule(ctx, [], [p + b"\x00b", b"\x00", p + b".\x00"], _accepts_topic, _rejects_topic)
    rule(ctx, [], [b"a\x00b", p + b"\x00", p + b".*\x00", b"\x00>"], _accepts_filter, _rejects_filter)


# -------------------------------------------------------------- matching

def match_case(ctx, filters, topics, expect):
    """Subscribe each filter (sid = index + 1) on one connection, publish every
    topic from another, and check each subscription got exactly the topics
    `expect[filter]` lists."""
    c = ctx.client()
    for i, f in enumerate(filters):
        sub(c, i + 1, f)
    p = ctx.client(name="publisher")
    req = 0
    for t in topics:
        req += 1
        p.send(wire.publish(t, b"x", req=req))
    for _ in topics:
        p.expect("ack")
    want = {}
    for i, f in enumerate(filters):
        for t in expect.get(f, ()):
            want.setdefault(i + 1, set()).add(t)
    n = sum(len(v) for v in want.values())
    got = {}
    frames = delivers(c, n, what="matching DELIVERs") if n else []
    frames += c.barrier()
    for fr in frames:
        check(kind(fr) == "deliver", "unexpected %s", describe(fr))
        got.setdefault(fr.sid, []).append(fr.deliver.topic)
    bad = []
    for i, f in enumerate(filters):
        g = sorted(got.get(i + 1, []))
        w = sorted(want.get(i + 1, set()))
        if g != w:
            bad.append("filter %r: got %s, want %s" % (f, g, w))
    check(not bad, "; ".join(bad))


@test("s06_match_star")
def _(ctx):
    """'*' matches exactly one token: orders.*.new matches orders.eu.new, not
    orders.new nor orders.eu.x.new."""
    p = ctx.topic()
    o = p + ".orders"
    topics = [o + ".eu.new", o + ".new", o + ".eu.x.new", o + ".us.new", o + ".eu.old", o + ".eu"]
    match_case(ctx, [o + ".*.new", o + ".*", "*." + "orders.eu.new", "*.*"],
               topics, {o + ".*.new": [o + ".eu.new", o + ".us.new"],
                        o + ".*": [o + ".new", o + ".eu"],
                        "*.orders.eu.new": [o + ".eu.new"]})


@test("s06_match_gt")
def _(ctx):
    """'>' matches one or more tokens to the end: orders.> matches orders.eu and
    orders.eu.new, not orders; '*.>' needs two tokens at least."""
    p = ctx.topic()
    o = p + ".orders"
    topics = [o, o + ".eu", o + ".eu.new", o + "x.eu", p + ".other"]
    match_case(ctx, [o + ".>", p + ".*.>", p + ".>"], topics,
               {o + ".>": [o + ".eu", o + ".eu.new"],
                p + ".*.>": [o + ".eu", o + ".eu.new", o + "x.eu"],
                p + ".>": topics})


@test("s06_match_gt_alone")
def _(ctx):
    """'>' alone matches every topic (one token or many)."""
    p = ctx.topic()
    topics = [p, p + ".a", p + ".a.b.c.d", p + "zz"]
    match_case(ctx, [">"], topics, {">": topics})


@test("s06_match_literal")
def _(ctx):
    """Other tokens match themselves only, byte for byte, case-sensitive."""
    p = ctx.topic()
    topics = [p + ".orders.eu", p + ".Orders.eu", p + ".orders.EU", p + ".orders.eu.x",
              p + ".orders.e", p + ".orders.euu", p + ".orders.é"]
    match_case(ctx, [p + ".orders.eu", p + ".orders.é"], topics,
               {p + ".orders.eu": [p + ".orders.eu"], p + ".orders.é": [p + ".orders.é"]})


# -------------------------------------------------------------- §7

@test("s07_overlapping_subscriptions_each_deliver")
def _(ctx):
    """Two overlapping subscriptions on one connection get two DELIVERs, told
    apart by Frame.sid; the same message (seq, time_ns)."""
    t = ctx.topic("a.b")
    c = ctx.client()
    sub(c, 1, ctx.topic(">"))
    sub(c, 2, ctx.topic("*.b"))
    sub(c, 3, t)
    publish_acked(ctx.client(), t, [b"m"])
    d = delivers(c, 3)
    eq(sorted(f.sid for f in d), [1, 2, 3], "sids")
    eq(len({(f.deliver.seq, f.deliver.time_ns, f.deliver.payload) for f in d}), 1,
       "distinct messages among the three DELIVERs")
    eq(c.barrier(), [], "more frames")


@test("s07_every_subscriber_in_publish_order")
def _(ctx):
    """Every matching subscription gets every message; messages one connection
    publishes to one topic arrive in the order published."""
    t = ctx.topic("x")
    subs = [ctx.client() for _ in range(4)]
    for i, s in enumerate(subs):
        sub(s, i + 1, t if i % 2 else ctx.topic(">"))
    p = ctx.client()
    n = 500
    p.send(*[wire.publish(t, b"%d" % i, req=i + 1) for i in range(n)])
    for i in range(n):
        a = p.expect("ack", skip=())
        eq(a.ack.seq, i + 1, "ACK seq")
    for i, s in enumerate(subs):
        d = delivers(s, n, sid=i + 1, timeout=5)
        eq([f.deliver.payload for f in d], [b"%d" % k for k in range(n)], "payload order")
        eq([f.deliver.seq for f in d], list(range(1, n + 1)), "seq order")


@test("s07_two_publishers_one_topic")
def _(ctx):
    """Two publishers on one topic: each one's messages arrive in its order; the
    seqs together are 1..N, each exactly once."""
    t = ctx.topic()
    s = ctx.client()
    sub(s, 1, t)
    p1, p2 = ctx.client(), ctx.client()
    n = 200
    p1.send(*[wire.publish(t, b"a%d" % i, req=i + 1) for i in range(n)])
    p2.send(*[wire.publish(t, b"b%d" % i, req=i + 1) for i in range(n)])
    for p in (p1, p2):
        for _ in range(n):
            p.expect("ack")
    d = delivers(s, 2 * n, sid=1, timeout=5)
    eq(sorted(f.deliver.seq for f in d), list(range(1, 2 * n + 1)), "seqs")
    for who in (b"a", b"b"):
        mine = [f.deliver.payload for f in d if f.deliver.payload.startswith(who)]
        eq(mine, [who + b"%d" % i for i in range(n)], "order of %s's messages" % who.decode())
