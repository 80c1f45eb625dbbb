"""§1 Framing, §2 The Frame envelope, §3 Connection lifecycle."""
import socket
import struct
import time

import wire
from harness import (ANY, ERR, check, closes, delivers, eq, kind, describe, publish_acked,
                     sub, test)

MAX_FRAME = 1048576


# ------------------------------------------------------------------ §1

@test("s01_len0_frame_size")
def _(ctx):
    """Length 0 -> ERROR ERR_FRAME_SIZE (text names the length and the limit), close."""
    c = ctx.client()
    c.send_raw(b"\0\0\0\0")
    e = closes(c, ERR["ERR_FRAME_SIZE"])
    check("0" in e.text and str(MAX_FRAME) in e.text,
          "ERR_FRAME_SIZE text must name the length and the limit (§1): %r", e.text)


@test("s01_len0_before_hello")
def _(ctx):
    """Frame size is checked before anything else: length 0 as the very first frame."""
    c = ctx.connect()
    c.send_raw(b"\0\0\0\0")
    closes(c, ERR["ERR_FRAME_SIZE"])


@test("s01_len_above_max_frame_before_body")
def _(ctx):
    """N = max_frame + 1: ERROR ERR_FRAME_SIZE as soon as the 4 header bytes are
    in, before any body byte is sent, then close."""
    c = ctx.client()
    check(c.welcome.max_frame == MAX_FRAME, "Welcome.max_frame %d", c.welcome.max_frame)
    c.send_raw(struct.pack(">I", MAX_FRAME + 1))
    e = closes(c, ERR["ERR_FRAME_SIZE"])
    check(str(MAX_FRAME + 1) in e.text and str(MAX_FRAME) in e.text,
          "ERR_FRAME_SIZE text must name the length and the limit (§1): %r", e.text)


@test("s01_len_4gib_before_body")
def _(ctx):
    """N = 0xffffffff: refused from the header alone (no memory reserved)."""
    c = ctx.client()
    c.send_raw(b"\xff\xff\xff\xff")
    closes(c, ERR["ERR_FRAME_SIZE"])


@test("s01_len_exactly_max_frame")
def _(ctx):
    """N = max_frame is valid (1 <= N <= max_frame); the DELIVER of it is at
    most max_frame + 64 bytes."""
    c = ctx.client()
    t = ctx.topic("big")
    s = ctx.client(name="sub")
    sub(s, 1, t)
    base = wire.publish(t, b"", req=1)
    n0 = len(base.SerializeToString())
    # grow the payload until the body is exactly MAX_FRAME bytes
    size = MAX_FRAME - n0 - 4
    while True:
        f = wire.publish(t, b"\xab" * size, req=1)
        n = len(f.SerializeToString())
        if n == MAX_FRAME:
            break
        size += MAX_FRAME - n
    c.send(f)
    a = c.expect("ack", timeout=5)
    eq(a.ack.ref, 1, "ACK ref")
    s.max_frame = MAX_FRAME + 64
    s.keep_raw = True
    d = delivers(s, 1, timeout=5)[0]
    eq(len(d.deliver.payload), size, "DELIVER payload length")
    check(len(s.raw_frames[-1]) <= MAX_FRAME + 64, "DELIVER of %d bytes > max_frame + 64",
          len(s.raw_frames[-1]))


@test("s01_frame_split_over_many_sends")
def _(ctx):
    """A reader cuts frames only when whole: HELLO, SUBSCRIBE and PUBLISH sent
    one byte per send (headers split too) work as usual."""
    c = ctx.connect()
    t = ctx.topic()
    data = wire.enc(wire.hello()) + wire.enc(wire.subscribe(1, t, req=1)) + \
        wire.enc(wire.publish(t, b"split", req=2))
    for i in range(len(data)):
        c.send_raw(data[i:i + 1])
    c.expect("welcome")
    a = c.expect("ack")
    eq(a.ack.ref, 1, "first ACK ref")
    got = [c.recv(), c.recv()]   # our own DELIVER and the ACK, either order
    kinds = sorted(kind(f) for f in got)
    eq(kinds, ["ack", "deliver"], "frames after the PUBLISH")
    d = [f for f in got if kind(f) == "deliver"][0]
    eq(d.deliver.payload, b"split", "payload")


@test("s01_many_frames_in_one_send")
def _(ctx):
    """200 PUBLISH frames (and the HELLO) in one send: 200 ACKs, in order,
    seq 1..200."""
    c = ctx.connect()
    t = ctx.topic()
    data = wire.enc(wire.hello()) + b"".join(
        wire.enc(wire.publish(t, b"m%d" % i, req=i + 1)) for i in range(200))
    c.send_raw(data)
    c.expect("welcome")
    for i in range(200):
        a = c.expect("ack")
        eq(a.ack.ref, i + 1, "ACK ref")
        eq(a.ack.seq, i + 1, "ACK seq (1, 2, 3, ... per topic, §4.4)")


def bad_body(ctx, body, hello_first=True):
    c = ctx.client() if hello_first else ctx.connect()
    c.send_raw(wire.frame_bytes(body))
    return closes(c, ERR["ERR_BAD_FRAME"])


@test("s01_bad_body_field_past_end")
def _(ctx):
    """A field running past the end of the body -> ERR_BAD_FRAME, close."""
    bad_body(ctx, b"\x1a\x10\x0a\x02ab")     # publish: length 16, only 4 bytes


@test("s01_bad_body_wrong_wire_type")
def _(ctx):
    """A known field with the wrong wire type -> ERR_BAD_FRAME, close.
    (Frame.req as length-delimited, beside a valid PING body.)"""
    bad_body(ctx, b"\x42\x00" + b"\x72\x01\x07")


@test("s01_bad_body_wrong_wire_type_body_member")
def _(ctx):
    """Frame.publish (a message) sent as a varint -> ERR_BAD_FRAME."""
    bad_body(ctx, b"\x18\x01")


@test("s01_bad_body_truncated_varint")
def _(ctx):
    """A varint that never ends -> ERR_BAD_FRAME."""
    bad_body(ctx, b"\x42\x00\x70\xff\xff")


@test("s01_bad_body_before_hello")
def _(ctx):
    """Unpack comes before the connection-state check: garbage first frame ->
    ERR_BAD_FRAME (not ERR_NOT_HELLO)."""
    bad_body(ctx, b"\x0a\x10\x08", hello_first=False)


@test("s01_truncated_stream_gets_no_error")
def _(ctx):
    """A stream that ends inside a frame: ERR_TRUNCATED is never sent; the
    broker just closes (we half-close after half a frame)."""
    b = ctx.b
    before = b.metrics()
    for partial in (b"\x00\x00", wire.enc(wire.ping(5))[:-2]):
        c = ctx.client()
        c.send_raw(partial)
        c.sock.shutdown(socket.SHUT_WR)
        rest = c.wait_eof()
        check(not rest, "broker sent %s to a truncated stream (§1: nothing is sent)",
              [describe(x) for x in rest])
    ctx.client().assert_open()
    # "the broker logs it and counts it": some counter about truncation (or
    # the protocol error total) grows by the two streams
    def counted():
        now = b.metrics()
        keys = [k for k in now if "truncat" in k.lower()] + ["fanout_protocol_errors_total"]
        return any(now.get(k, 0) - before.get(k, 0) >= 2 for k in keys)
    deadline = wire.now() + 3
    while not counted():
        check(wire.now() < deadline, "no counter (truncated, or fanout_protocol_errors_total) "
              "counted the two truncated streams")


# ------------------------------------------------------------------ §2

@test("s02_no_body_member_unknown_frame")
def _(ctx):
    """A Frame with no body member (only req) -> ERR_UNKNOWN_FRAME with ref = req
    (§4.11: ref when the offending frame carried a non-zero req), close."""
    c = ctx.client()
    c.send_raw(wire.frame_bytes(wire.f_varint(14, 9)))
    closes(c, ERR["ERR_UNKNOWN_FRAME"], ref=9)


@test("s02_unknown_body_member_unknown_frame")
def _(ctx):
    """An unknown member (field 13, free; or field 16) reads as no body ->
    ERR_UNKNOWN_FRAME, close."""
    for body in (wire.f_bytes(13, b"\x08\x01"), wire.f_bytes(16, b"")):
        c = ctx.client()
        c.send_raw(wire.frame_bytes(body))
        closes(c, ERR["ERR_UNKNOWN_FRAME"])


@test("s02_unknown_body_member_before_hello")
def _(ctx):
    """Body-member check comes before the connection-state check."""
    c = ctx.connect()
    c.send_raw(wire.frame_bytes(wire.f_varint(14, 1)))
    closes(c, ERR["ERR_UNKNOWN_FRAME"], ref=ANY)


@test("s02_unknown_fields_skipped")
def _(ctx):
    """Unknown fields are skipped: on the Frame (field 20, 100), in the body
    (Publish field 9) and in HELLO."""
    c = ctx.connect()
    t = ctx.topic()
    c.send_raw(wire.frame_bytes(wire.f_bytes(1, wire.hello().hello.SerializeToString() +
                                             wire.f_varint(50, 1)) + wire.f_varint(100, 7)))
    c.expect("welcome")
    body = wire.f_bytes(3, wire.f_bytes(1, t) + wire.f_bytes(2, b"p") + wire.f_varint(9, 3) +
                        wire.f_bytes(10, b"zz")) + wire.f_varint(14, 5) + wire.f_bytes(20, b"x")
    c.send_raw(wire.frame_bytes(body))
    a = c.expect("ack")
    eq(a.ack.ref, 5, "ACK ref")
    eq(a.ack.seq, 1, "ACK seq")


@test("s02_two_members_last_wins")
def _(ctx):
    """Two body members: the last one wins (PUBLISH then PING is a PING)."""
    c = ctx.client()
    t = ctx.topic()
    body = wire.f_bytes(3, wire.f_bytes(1, t)) + wire.f_bytes(8, wire.f_varint(1, 77))
    c.send_raw(wire.frame_bytes(body))
    f = c.expect("pong")
    eq(f.pong.nonce, 77, "PONG nonce")
    c.assert_open()
    # and the PUBLISH did not happen: the topic's first message is seq 1
    seqs, _ = publish_acked(c, t, [b"x"])
    eq(seqs, [1], "seq of the first real PUBLISH")


@test("s02_fields_in_any_order")
def _(ctx):
    """Fields may come in any order: req before the body, topic after payload."""
    c = ctx.client()
    t = ctx.topic()
    body = wire.f_varint(14, 3) + wire.f_bytes(3, wire.f_bytes(2, b"pp") + wire.f_bytes(1, t))
    c.send_raw(wire.frame_bytes(body))
    a = c.expect("ack")
    eq((a.ack.ref, a.ack.seq), (3, 1), "ACK ref, seq")


@test("s02_sid_ignored_on_client_frames")
def _(ctx):
    """Frame.sid on client frames is ignored: a PUBLISH with sid works; a
    SUBSCRIBE's subscription id is Subscribe.sid, not Frame.sid."""
    c = ctx.client()
    t = ctx.topic()
    f = wire.subscribe(4, t, req=1)
    f.sid = 9
    c.send(f)
    eq(c.expect("ack").ack.ref, 1, "ACK ref")
    p = wire.publish(t, b"s", req=2)
    p.sid = 4
    c.send(p)
    got = [c.recv(), c.recv()]
    d = [x for x in got if kind(x) == "deliver"]
    check(len(d) == 1 and any(kind(x) == "ack" for x in got), "got %s", [describe(x) for x in got])
    eq(d[0].sid, 4, "DELIVER Frame.sid")


def _unexpected(member, body):
    def t(ctx):
        c = ctx.client()
        c.send_raw(wire.frame_bytes(wire.f_bytes(member, body)))
        closes(c, ERR["ERR_UNEXPECTED"])
    return t


for _name, _member, _body in (
        ("welcome", 2, wire.f_varint(1, 1)),
        ("deliver", 6, wire.f_bytes(1, "a") + wire.f_varint(2, 1)),
        ("ack", 7, wire.f_varint(1, 1)),
        ("error", 10, wire.f_varint(1, 2)),
        ("gap", 11, wire.f_bytes(1, "a") + wire.f_varint(2, 1) + wire.f_varint(3, 1))):
    test("s02_client_sends_%s_unexpected" % _name)(_unexpected(_member, _body))


@test("s02_unexpected_before_missing_field")
def _(ctx):
    """Connection state (UNEXPECTED) is checked before required fields: an
    empty DELIVER from a client is ERR_UNEXPECTED."""
    c = ctx.client()
    c.send_raw(wire.frame_bytes(wire.f_bytes(6, b"")))
    closes(c, ERR["ERR_UNEXPECTED"])


# ------------------------------------------------------------------ §3

@test("s03_first_frame_not_hello")
def _(ctx):
    """Any other first frame -> ERR_NOT_HELLO, close: PUBLISH, SUBSCRIBE, PING,
    and a broker-only frame (DELIVER)."""
    t = ctx.topic()
    for f, ref in ((wire.publish(t, b"x", req=1), 1), (wire.subscribe(1, t), None),
                   (wire.ping(1), None)):
        c = ctx.connect()
        c.send(f)
        closes(c, ERR["ERR_NOT_HELLO"], ref=ref)
    c = ctx.connect()
    c.send_raw(wire.frame_bytes(wire.f_bytes(6, wire.f_bytes(1, "a"))))
    closes(c, ERR["ERR_NOT_HELLO"])


@test("s03_not_hello_before_missing_field")
def _(ctx):
    """A PUBLISH without topic as the first frame is ERR_NOT_HELLO."""
    c = ctx.connect()
    c.send(wire.publish(None, b"x"))
    closes(c, ERR["ERR_NOT_HELLO"])


@test("s03_hello_twice")
def _(ctx):
    """A second HELLO -> ERR_NOT_HELLO, close (also with a bad version)."""
    for v in (1, 0):
        c = ctx.client()
        c.send(wire.hello(v))
        closes(c, ERR["ERR_NOT_HELLO"])


@test("s03_hello_timeout", brokers="keepalive")
def _(ctx):
    """No HELLO within hello-timeout (300 ms) -> ERROR ERR_IDLE_TIMEOUT, close."""
    c = ctx.connect()
    t0 = wire.now()
    closes(c, ERR["ERR_IDLE_TIMEOUT"], timeout=3)
    dt = wire.now() - t0
    check(dt >= 0.25, "closed after %.3fs, before hello-timeout (300 ms)", dt)


@test("s03_hello_timeout_partial_hello", brokers="keepalive")
def _(ctx):
    """Half a HELLO is not a HELLO: still ERR_IDLE_TIMEOUT."""
    c = ctx.connect()
    c.send_raw(wire.enc(wire.hello())[:5])
    closes(c, ERR["ERR_IDLE_TIMEOUT"], timeout=3)


@test("s03_welcome_fields")
def _(ctx):
    """WELCOME: every field marked always is there and means what §4.2 says."""
    b = ctx.b
    t_before = time.time_ns()
    c = ctx.connect()
    c.send(wire.hello(1))
    f = c.expect("welcome")
    w = f.welcome
    for fld in ("version", "server_version", "server_id", "max_frame", "max_output",
                "ping_interval_ms", "idle_timeout_ms", "epoch", "max_datagram", "client_id"):
        check(w.HasField(fld), "Welcome.%s absent (§4.2: always)", fld)
    eq(w.version, 1, "Welcome.version")
    version = open("VERSION").read().strip()
    check(w.server_version.startswith("fanout ") and version in w.server_version,
          "Welcome.server_version %r (e.g. 'fanout %s')", w.server_version, version)
    check(w.server_id, "Welcome.server_id empty")
    eq(w.max_frame, 1048576, "Welcome.max_frame (default 1 MiB)")
    eq(w.max_output, 32 << 20, "Welcome.max_output (default 32 MiB)")
    eq(w.ping_interval_ms, 10000, "Welcome.ping_interval_ms (default 10 s)")
    eq(w.idle_timeout_ms, 30000, "Welcome.idle_timeout_ms (default 30 s)")
    eq(w.max_datagram, 1400, "Welcome.max_datagram (default 1400)")
    eq(len(w.groups), 0, "Welcome.groups (multicast off)")
    check(b.start_wall_ns - 5 * 10**9 <= w.epoch <= t_before,
          "Welcome.epoch %d is not the broker's start time (CLOCK_REALTIME ns, started at %d)",
          w.epoch, b.start_wall_ns)
    c2 = ctx.client()
    eq(c2.welcome.epoch, w.epoch, "epoch of a second connection")
    eq(c2.welcome.server_id, w.server_id, "server_id of a second connection")
    check(c2.welcome.client_id != w.client_id, "two connections have the same client_id %d",
          w.client_id)


@test("s03_server_id_and_epoch_per_process", brokers=("default", "keepalive"))
def _(ctx):
    """server_id is unique per broker process; epoch is the start time, so a
    broker started later has a larger one."""
    a = ctx.client("default").welcome
    k = ctx.client("keepalive").welcome
    check(a.server_id != k.server_id, "two brokers share server_id %r", a.server_id)
    da, dk = ctx.broker("default"), ctx.broker("keepalive")
    first, second = (a, k) if da.start_wall_ns < dk.start_wall_ns else (k, a)
    check(second.epoch > first.epoch, "epoch of the later broker %d <= the earlier's %d",
          second.epoch, first.epoch)


@test("s03_welcome_reflects_options", brokers=("keepalive", "retention", "slow"))
def _(ctx):
    """Welcome announces the configured limits (§15)."""
    w = ctx.client("keepalive").welcome
    eq((w.ping_interval_ms, w.idle_timeout_ms), (200, 1000), "keepalive broker's intervals")
    eq(ctx.client("retention").welcome.max_frame, 2048, "Welcome.max_frame with --max-frame 2KiB")
    eq(ctx.client("slow").welcome.max_output, 4096, "Welcome.max_output with --max-output 4KiB")


@test("s03_version_negotiation")
def _(ctx):
    """Welcome.version is the lower of Hello.version and the broker's (1)."""
    for v in (1, 2, 7, 0xFFFFFFFF):
        c = ctx.connect()
        c.send(wire.hello(v))
        eq(c.expect("welcome").welcome.version, 1, "Welcome.version for Hello.version %d" % v)
        c.assert_open()


@test("s03_version_0")
def _(ctx):
    """Hello.version 0 -> ERR_VERSION, close."""
    c = ctx.connect()
    c.send(wire.hello(0))
    closes(c, ERR["ERR_VERSION"])


@test("s03_version_missing")
def _(ctx):
    """Hello.version is required -> ERR_MISSING_FIELD (text names it), close."""
    c = ctx.connect()
    c.send(wire.hello(None))
    e = closes(c, ERR["ERR_MISSING_FIELD"])
    check("version" in e.text, "ERR_MISSING_FIELD text must name the field: %r", e.text)


@test("s03_hello_optional_fields")
def _(ctx):
    """client_name is optional; user/password are ignored by a broker without
    credentials; HELLO's req is ignored (WELCOME is the answer, no ACK)."""
    for f in (wire.hello(1, client_name=None), wire.hello(1, user="bob", password="x"),
              wire.hello(1, req=5)):
        c = ctx.connect()
        c.send(f)
        c.expect("welcome")
        c.assert_open()


@test("s03_pipelining")
def _(ctx):
    """Frames sent right after HELLO, without waiting for WELCOME, are handled in
    order after it; WELCOME comes first."""
    c = ctx.connect()
    t = ctx.topic()
    c.send(wire.hello(), wire.subscribe(1, t, req=1), wire.publish(t, b"p", req=2), wire.ping(3))
    c.expect("welcome")
    eq(c.expect("ack").ack.ref, 1, "ACK of the SUBSCRIBE")
    got = c.collect_until(lambda f: kind(f) == "pong", what="PONG")
    acks = [f.ack.ref for f in got if kind(f) == "ack"]
    eq(acks, [2], "ACKs after the SUBSCRIBE's")
    check(any(kind(f) == "deliver" for f in got), "own DELIVER missing")


@test("s03_pipelined_frames_discarded_after_failed_hello")
def _(ctx):
    """Frames pipelined after a HELLO that fails are discarded."""
    t = ctx.topic()
    c = ctx.connect()
    c.send(wire.hello(0), wire.publish(t, b"lost", req=1))
    closes(c, ERR["ERR_VERSION"])
    seqs, _ = publish_acked(ctx.client(), t, [b"x"])
    eq(seqs, [1], "first seq of the topic (the discarded PUBLISH took none)")


@test("s03_fatal_error_stops_reading")
def _(ctx):
    """After an error that closes, the broker handles no further frame from the
    connection; frames already answered stay answered; other connections are
    not affected; the error is counted (fanout_protocol_errors_total)."""
    b = ctx.b
    t = ctx.topic()
    other = ctx.client()
    before = b.metric("fanout_protocol_errors_total")
    check(before is not None, "fanout_protocol_errors_total missing from /metrics")
    per0 = {k: v for k, v in b.metrics().items() if '"invalid_topic"' in k}
    c = ctx.client()
    c.send(wire.publish(t, b"1", req=1), wire.publish("bad topic", b"2", req=2),
           wire.publish(t, b"3", req=3))
    a = c.expect("ack")
    eq((a.ack.ref, a.ack.seq), (1, 1), "ACK of the first PUBLISH")
    closes(c, ERR["ERR_INVALID_TOPIC"], ref=2)
    other.assert_open()
    seqs, _ = publish_acked(other, t, [b"4"])
    eq(seqs, [2], "seq after the closed connection's frames (the third PUBLISH must not count)")
    b.wait_metric("fanout_protocol_errors_total", lambda v: v >= before + 1,
                  what=">= %d" % (before + 1))
    # ... and in a per-code counter: some series labelled invalid_topic grew
    per = {k: v for k, v in b.metrics().items() if '"invalid_topic"' in k}
    check(per and any(v - per0.get(k, 0) >= 1 for k, v in per.items()),
          "no per-code error counter (a series labelled \"invalid_topic\") counted the error")


@test("s03_close_removes_subscriptions")
def _(ctx):
    """When a connection goes, the broker removes its subscriptions: a queue
    group whose other member left sends everything to the one remaining.
    (An ungrouped witness subscription on the remaining member's connection
    tells, with a PING barrier, whether each message went to the member.)"""
    t = ctx.topic()
    a, gone = ctx.client(), ctx.client()
    sub(a, 1, t, queue="q")
    sub(a, 2, t)                    # witness
    sub(gone, 1, t, queue="q")
    gone.close()
    p = ctx.client(name="publisher")
    deadline = wire.now() + 3
    run, req = 0, 0
    while run < 8:
        check(wire.now() < deadline, "the closed member's subscription is still served "
              "3 s after its close")
        req += 1
        seq = publish_acked(p, t, [b"x"], req0=req)[0][0]
        got = a.collect_until(lambda f: kind(f) == "deliver" and f.sid == 2, what="witness")
        got += a.barrier()
        mine = [f for f in got if kind(f) == "deliver" and f.sid == 1]
        run = run + 1 if [f.deliver.seq for f in mine] == [seq] else 0
