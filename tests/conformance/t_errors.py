"""§14 Errors (the codes not exercised elsewhere, which error wins when a
frame breaks several rules, NUL bytes in strings), §15 Limits, §16
Versioning."""
import signal

import wire
from harness import (ANY, ERR, check, closes, delivers, describe, eq, kind, pb, publish_acked,
                     stays_open, sub, test)

S = pb


# ------------------------------------------------------------------ codes

@test("s14_max_conns", brokers="maxconns")
def _(ctx):
    """At max-conns (2): ERROR ERR_MAX_CONNS right after accept, before HELLO,
    and a close; a slot freed by a close can be used again."""
    b = ctx.b
    c1, c2 = ctx.client(), ctx.client()
    c3 = ctx.connect()
    closes(c3, ERR["ERR_MAX_CONNS"])
    c1.close()
    deadline = wire.now() + 3
    while True:
        c = ctx.connect()
        c.send(wire.hello())
        f = c.recv()
        if kind(f) == "welcome":
            break
        check(kind(f) == "error" and f.error.code == ERR["ERR_MAX_CONNS"], "got %s", describe(f))
        check(wire.now() < deadline, "the closed connection's slot is not free after 3 s")
        c.close()
        b.metrics()       # a round trip to the broker before the next try
    c2.assert_open()
    c.assert_open()


def _shutdown_setup(ctx):
    """An idle client, a subscriber that does not read with ~6 MB queued for it
    (more than the kernel buffers hold), and its publisher. SIGTERM."""
    b = ctx.b
    t = ctx.topic()
    idle = ctx.client()
    s = ctx.client(rcvbuf=4096)
    sub(s, 1, t)
    p = ctx.client(name="publisher")
    n = 0
    for _ in range(60):
        publish_acked(p, t, [b"q" * 1000] * 100, req0=n + 1)
        n += 100
    b.expect_exit = True
    b.signal(signal.SIGTERM)
    return b, idle, s, p, n


@test("s14_shutdown_drains_then_err_shutdown", brokers="shutdown")
def _(ctx):
    """SIGTERM: what is queued is still flushed within the drain timeout; then
    every connection gets ERROR ERR_SHUTDOWN and a close; the broker exits 0."""
    b, idle, s, p, n = _shutdown_setup(ctx)
    got = s.wait_eof(timeout=10)
    d = [f for f in got if kind(f) == "deliver"]
    eq([f.deliver.seq for f in d], list(range(1, n + 1)), "messages flushed during the drain")
    check(got and kind(got[-1]) == "error" and got[-1].error.code == ERR["ERR_SHUTDOWN"],
          "last frame before EOF: %s (want ERROR ERR_SHUTDOWN)", describe(got[-1]) if got else None)
    eq(len(got), n + 1, "frames")
    for c in (idle, p):
        rest = c.wait_eof(timeout=5)
        eq([pb.ErrorCode.Name(f.error.code) for f in rest if kind(f) == "error"], ["ERR_SHUTDOWN"],
           "ERRORs before EOF")
    rc = b.wait_exit(10)
    eq(rc, 0, "exit status after SIGTERM")


@test("s14_shutdown_healthz_draining", brokers="shutdown2")
def _(ctx):
    """While the broker drains, /healthz answers 503 "draining\n"
    (text/plain; charset=utf-8)."""
    b, idle, s, p, n = _shutdown_setup(ctx)
    deadline = wire.now() + 2.5
    try:
        while True:
            try:
                st, hdr, body = b.get("/healthz")
            except OSError as e:
                raise AssertionError("/healthz not answered while draining: %s" % e)
            if st == 503:
                break
            check(wire.now() < deadline, "/healthz still %d after SIGTERM", st)
        eq(body, b"draining\n", "/healthz body while draining")
        eq(hdr.get("content-type"), "text/plain; charset=utf-8", "/healthz content type")
    finally:
        s.wait_eof(timeout=10)


@test("s14_topic_limit_bad_request", brokers="keepalive")
def _(ctx):
    """At max-topics (3), a PUBLISH to a new topic is refused with
    ERR_BAD_REQUEST ("topic limit reached", stays open); existing topics go on;
    an invalid topic still gets ERR_INVALID_TOPIC."""
    c = ctx.client()
    for i in range(3):
        publish_acked(c, ctx.topic("t%d" % i), [b"x"], req0=i + 1)
    c.send(wire.publish(ctx.topic("t3"), b"x", req=10))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=10)
    eq(publish_acked(c, ctx.topic("t0"), [b"y"], req0=11)[0], [2], "seq on an existing topic")
    c.send(wire.publish("bad topic", b"x", req=12))
    closes(c, ERR["ERR_INVALID_TOPIC"], ref=12)


# ------------------------------------------------------------------ which error wins

def _first_error(ctx, frame, code, close, ref=ANY, sid=ANY):
    c = ctx.client()
    if isinstance(frame, bytes):
        c.send_raw(frame)
    else:
        c.send(frame)
    (closes if close else stays_open)(c, ERR[code], ref=ref, sid=sid)


@test("s14_order_invalid_topic_before_bad_sid")
def _(ctx):
    """SUBSCRIBE with sid 0 and an invalid filter -> ERR_INVALID_TOPIC (closes)."""
    _first_error(ctx, wire.subscribe(0, "a..b", req=1), "ERR_INVALID_TOPIC", True, ref=1)


@test("s14_order_missing_field_before_bad_request")
def _(ctx):
    """SUBSCRIBE START_SEQ without start_seq and a bad queue name ->
    ERR_MISSING_FIELD (closes)."""
    _first_error(ctx, wire.subscribe(1, ctx.topic(), req=1, start=S.START_SEQ, queue="bad q"),
                 "ERR_MISSING_FIELD", True, ref=1)


@test("s14_order_missing_field_before_invalid_topic")
def _(ctx):
    """SUBSCRIBE without sid and an invalid filter -> ERR_MISSING_FIELD."""
    _first_error(ctx, wire.subscribe(None, "a..b", req=1), "ERR_MISSING_FIELD", True, ref=1)


@test("s14_order_invalid_topic_before_bad_request")
def _(ctx):
    """An invalid filter with an unknown enum value -> ERR_INVALID_TOPIC; an
    invalid REPAIR topic with first > last -> ERR_INVALID_TOPIC."""
    body = wire.f_varint(1, 1) + wire.f_bytes(2, "a b") + wire.f_varint(4, 7)
    _first_error(ctx, wire.frame_bytes(wire.f_bytes(4, body) + wire.f_varint(14, 1)),
                 "ERR_INVALID_TOPIC", True, ref=1)
    c = ctx.client()
    sub(c, 1, ">")
    c.send(wire.repair(1, "a..b", 5, 2, req=2))
    closes(c, ERR["ERR_INVALID_TOPIC"], ref=2)


@test("s14_order_bad_sid_before_bad_request")
def _(ctx):
    """sid 0 with a bad queue name -> ERR_BAD_SID; REPAIR of a sid not open with
    first > last -> ERR_BAD_SID (both stay open)."""
    _first_error(ctx, wire.subscribe(0, ctx.topic(), req=1, queue="bad q"), "ERR_BAD_SID", False,
                 ref=1)
    _first_error(ctx, wire.repair(4, ctx.topic(), 5, 2, req=2), "ERR_BAD_SID", False, ref=2, sid=4)


@test("s14_order_missing_field_before_bad_sid")
def _(ctx):
    """REPAIR of a sid not open, without last -> ERR_MISSING_FIELD (closes)."""
    _first_error(ctx, wire.repair(4, ctx.topic(), 1, None, req=2), "ERR_MISSING_FIELD", True, ref=2)


# ------------------------------------------------------------------ NUL bytes

@test("s14_nul_in_position_and_repair_topic")
def _(ctx):
    """A NUL inside Position.topic or Repair.topic -> ERR_INVALID_TOPIC (closes)."""
    t = ctx.topic()
    c = ctx.client()
    c.send(wire.subscribe(1, t + ".>", req=1, positions=[(t + ".a\x00b", 1)]))
    closes(c, ERR["ERR_INVALID_TOPIC"], ref=1)
    c = ctx.client()
    sub(c, 1, t + ".>")
    c.send(wire.repair(1, t + ".a\x00b", 1, 1, req=2))
    closes(c, ERR["ERR_INVALID_TOPIC"], ref=2)


@test("s14_nul_in_hello_strings_bad_frame")
def _(ctx):
    """A NUL inside Hello.client_name, Hello.user or Hello.password ->
    ERR_BAD_FRAME (closes)."""
    for kw in (dict(client_name="a\x00b"), dict(user="al\x00ice", password="x"),
               dict(user="alice", password="s3\x00cret")):
        c = ctx.connect()
        c.send(wire.hello(1, **kw))
        try:
            closes(c, ERR["ERR_BAD_FRAME"], ref=ANY)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (kw, e))


@test("s14_nul_in_hello_user_with_auth", brokers="auth")
def _(ctx):
    """The same with credentials configured: BAD_FRAME, not AUTH."""
    c = ctx.connect()
    c.send(wire.hello(1, user="alice\x00", password="s3cret"))
    closes(c, ERR["ERR_BAD_FRAME"])


# ------------------------------------------------------------------ §15

@test("s15_max_frame_option", brokers="retention")
def _(ctx):
    """--max-frame 2KiB: N = 2048 is accepted (its DELIVER is at most
    2048 + 64 bytes), N = 2049 is ERR_FRAME_SIZE (closes)."""
    c = ctx.client()
    eq(c.welcome.max_frame, 2048, "Welcome.max_frame")
    t = ctx.topic()
    s = ctx.client()
    s.keep_raw = True
    sub(s, 1, t)
    n0 = len(wire.publish(t, b"", req=1).SerializeToString())
    size = 2048 - n0 - 2
    f = wire.publish(t, b"p" * size, req=1)
    eq(len(f.SerializeToString()), 2048, "body length of the test frame")
    c.send(f)
    eq(c.expect("ack").ack.ref, 1, "ACK ref")
    delivers(s, 1)
    check(len(s.raw_frames[-1]) <= 2048 + 64, "DELIVER of %d bytes", len(s.raw_frames[-1]))
    f = wire.publish(t, b"p" * (size + 1), req=2)
    eq(len(f.SerializeToString()), 2049, "body length of the test frame")
    c.send(f)
    closes(c, ERR["ERR_FRAME_SIZE"])


# ------------------------------------------------------------------ §16

@test("s16_unknown_enum_and_fields")
def _(ctx):
    """A v1 peer skips unknown fields (new optional fields need no version
    bump); an unknown enum value is ERR_BAD_REQUEST, not a skipped field."""
    t = ctx.topic()
    c = ctx.client()
    body = wire.f_varint(1, 1) + wire.f_bytes(2, t) + wire.f_varint(30, 1) + wire.f_bytes(31, b"new")
    c.send_raw(wire.frame_bytes(wire.f_bytes(4, body) + wire.f_varint(14, 1)))
    eq(c.expect("ack").ack.ref, 1, "ACK of a SUBSCRIBE with unknown fields")
    body = wire.f_varint(1, 2) + wire.f_bytes(2, t) + wire.f_varint(5, 3)
    c.send_raw(wire.frame_bytes(wire.f_bytes(4, body) + wire.f_varint(14, 2)))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=2, sid=2)
