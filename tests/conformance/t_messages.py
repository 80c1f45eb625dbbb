"""§4 Messages (every frame type and field table), §5 Requests and ACK."""
import time

import wire
from harness import (ERR, check, closes, delivers, describe, eq, kind, pb,
                     publish_acked, stays_open, sub, test)

S = pb


# ------------------------------------------------------------------ §4.1 Hello

@test("s04_1_auth_ok", brokers="auth")
def _(ctx):
    """A broker with credentials welcomes the right user and password."""
    c = ctx.connect()
    c.send(wire.hello(1, user="alice", password="s3cret"))
    c.expect("welcome")
    c.assert_open()


@test("s04_1_auth_refused", brokers="auth")
def _(ctx):
    """Missing or wrong credentials -> ERR_AUTH, close."""
    for user, pw in ((None, None), ("alice", None), (None, "s3cret"), ("alice", "wrong"),
                     ("bob", "s3cret"), ("alice", "s3cret2"), ("", "")):
        c = ctx.connect()
        c.send(wire.hello(1, user=user, password=pw))
        try:
            closes(c, ERR["ERR_AUTH"], timeout=8.0)  # failures answer after a growing delay (§4.1)
        except AssertionError as e:
            raise AssertionError("user=%r password=%r: %s" % (user, pw, e))


@test("s04_1_auth_then_pipelined_discarded", brokers="auth")
def _(ctx):
    """Frames pipelined behind a refused HELLO are discarded."""
    t = ctx.topic()
    c = ctx.connect()
    c.send(wire.hello(1, user="alice", password="no"), wire.publish(t, b"x", req=1))
    closes(c, ERR["ERR_AUTH"], timeout=8.0)  # failures answer after a growing delay (§4.1)
    c = ctx.connect()
    c.send(wire.hello(1, user="alice", password="s3cret"))
    c.expect("welcome")
    eq(publish_acked(c, t, [b"y"])[0], [1], "first seq of the topic")


# ------------------------------------------------------------------ §4.4 Publish

@test("s04_4_publish_missing_topic")
def _(ctx):
    """Publish.topic is required -> ERR_MISSING_FIELD naming it, with ref, close."""
    c = ctx.client()
    c.send(wire.publish(None, b"x", req=4))
    e = closes(c, ERR["ERR_MISSING_FIELD"], ref=4)
    check("topic" in e.text, "text must name the field: %r", e.text)


@test("s04_4_payload_optional_and_opaque")
def _(ctx):
    """payload absent = empty; any bytes are carried byte for byte; DELIVER
    always has payload (possibly empty)."""
    t = ctx.topic()
    s = ctx.client()
    sub(s, 1, t)
    p = ctx.client()
    blob = bytes(range(256)) * 4
    p.send(wire.publish(t, None, req=1), wire.publish(t, b"", req=2), wire.publish(t, blob, req=3))
    for r in (1, 2, 3):
        eq(p.expect("ack").ack.ref, r, "ACK ref")
    d = delivers(s, 3)
    for f, want in zip(d, (b"", b"", blob)):
        check(f.deliver.HasField("payload"), "DELIVER seq %d without payload (§4.8: always)",
              f.deliver.seq)
        eq(f.deliver.payload, want, "payload of seq %d" % f.deliver.seq)


@test("s04_4_seq_per_topic")
def _(ctx):
    """Each topic counts its own sequence numbers 1, 2, 3, ..."""
    c = ctx.client()
    a, b = ctx.topic("a"), ctx.topic("b")
    frames = []
    for i in range(6):
        frames.append(wire.publish(a if i % 2 == 0 else b, b"x", req=i + 1))
    c.send(*frames)
    seqs = [c.expect("ack").ack.seq for _ in range(6)]
    eq(seqs, [1, 1, 2, 2, 3, 3], "ACK seqs of a,b,a,b,a,b")


@test("s04_4_publisher_receives_own_messages")
def _(ctx):
    """A client subscribed to a topic receives its own messages (the DELIVER
    may come before or after the PUBLISH's ACK)."""
    c = ctx.client()
    t = ctx.topic()
    sub(c, 1, t)
    c.send(wire.publish(t, b"mine", req=2))
    got = [c.recv(), c.recv()]
    eq(sorted(kind(f) for f in got), ["ack", "deliver"], "frames")
    d = [f for f in got if kind(f) == "deliver"][0]
    eq((d.sid, d.deliver.topic, d.deliver.seq, d.deliver.payload), (1, t, 1, b"mine"), "DELIVER")


# ------------------------------------------------------------------ §4.5 Subscribe

@test("s04_5_subscribe_missing_sid")
def _(ctx):
    c = ctx.client()
    c.send(wire.subscribe(None, ctx.topic(), req=1))
    e = closes(c, ERR["ERR_MISSING_FIELD"], ref=1)
    check("sid" in e.text, "text must name the field: %r", e.text)


@test("s04_5_subscribe_missing_filter")
def _(ctx):
    c = ctx.client()
    c.send(wire.subscribe(1, None, req=1))
    e = closes(c, ERR["ERR_MISSING_FIELD"], ref=1)
    check("filter" in e.text, "text must name the field: %r", e.text)


@test("s04_5_sid_0_bad_sid")
def _(ctx):
    """sid 0 -> ERR_BAD_SID with Error.sid = 0 present and ref, stays open."""
    c = ctx.client()
    c.send(wire.subscribe(0, ctx.topic(), req=3))
    stays_open(c, ERR["ERR_BAD_SID"], ref=3, sid=0)


@test("s04_5_sid_already_open")
def _(ctx):
    """A sid already open -> ERR_BAD_SID naming it, stays open; the first
    subscription is untouched (and not doubled)."""
    c = ctx.client()
    t = ctx.topic()
    sub(c, 5, t)
    c.send(wire.subscribe(5, t + ".other", req=2))
    stays_open(c, ERR["ERR_BAD_SID"], ref=2, sid=5)
    p = ctx.client()
    publish_acked(p, t, [b"a"])
    d = delivers(c, 1, sid=5)
    eq(d[0].deliver.topic, t, "topic")
    eq(c.barrier(), [], "frames after the one DELIVER")


@test("s04_5_sid_max")
def _(ctx):
    """Subscription ids go up to 2^32-1."""
    c = ctx.client()
    t = ctx.topic()
    sub(c, 0xFFFFFFFF, t)
    publish_acked(ctx.client(), t, [b"a"])
    delivers(c, 1, sid=0xFFFFFFFF)


def _raw_subscribe(sid, filt, req, extra):
    body = wire.f_varint(1, sid) + wire.f_bytes(2, filt) + extra
    return wire.frame_bytes(wire.f_bytes(4, body) + wire.f_varint(14, req))


@test("s04_5_unknown_enum_values")
def _(ctx):
    """An enum value the broker does not know (delivery, start, slow) ->
    ERR_BAD_REQUEST with sid and ref, stays open; no subscription is made (the
    sid is free afterwards)."""
    t = ctx.topic()
    for field, v in ((4, 7), (5, 9), (7, 42)):
        c = ctx.client()
        c.send_raw(_raw_subscribe(3, t, 8, wire.f_varint(field, v)))
        try:
            stays_open(c, ERR["ERR_BAD_REQUEST"], ref=8, sid=3)
        except AssertionError as e:
            raise AssertionError("Subscribe field %d = %d: %s" % (field, v, e))
        sub(c, 3, t)


@test("s04_5_ack_before_replay")
def _(ctx):
    """The SUBSCRIBE's ACK precedes every DELIVER for it (even replayed ones)."""
    t = ctx.topic()
    publish_acked(ctx.client(), t, [b"1", b"2", b"3"])
    c = ctx.client()
    c.send(wire.subscribe(1, t, req=9, start=S.START_EARLIEST))
    a = c.expect("ack")
    eq(a.ack.ref, 9, "ACK ref")
    d = delivers(c, 3, sid=1)
    eq([f.deliver.seq for f in d], [1, 2, 3], "replayed seqs")


@test("s04_5_max_subs", brokers="retention")
def _(ctx):
    """More than max-subs (3) open subscriptions -> ERR_MAX_SUBS with sid and
    ref, stays open; the subscription is not created; after an UNSUBSCRIBE
    there is room again."""
    c = ctx.client()
    t = ctx.topic()
    for sid in (1, 2, 3):
        sub(c, sid, t + ".%d" % sid)
    c.send(wire.subscribe(4, t + ".4", req=40))
    stays_open(c, ERR["ERR_MAX_SUBS"], ref=40, sid=4)
    c.send(wire.unsubscribe(4, req=41))
    stays_open(c, ERR["ERR_BAD_SID"], ref=41, sid=4)   # sid 4 was never created
    eq(c.request(wire.unsubscribe(2, req=42)).ref, 42, "UNSUBSCRIBE ACK")
    sub(c, 4, t + ".4")


@test("s04_5_limits_after_bad_sid_and_bad_request", brokers="retention")
def _(ctx):
    """At max-subs, a SUBSCRIBE that also breaks a stay-open rule gets that
    error: BAD_SID (duplicate sid) and BAD_REQUEST (bad queue name) come before
    MAX_SUBS."""
    c = ctx.client()
    t = ctx.topic()
    for sid in (1, 2, 3):
        sub(c, sid, t)
    c.send(wire.subscribe(2, t, req=5))
    stays_open(c, ERR["ERR_BAD_SID"], ref=5, sid=2)
    c.send(wire.subscribe(9, t, req=6, queue="bad queue"))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=6, sid=9)
    c.send_raw(_raw_subscribe(9, t, 7, wire.f_varint(7, 99)))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=7, sid=9)


# ------------------------------------------------------------------ §4.6 Position

@test("s04_6_position_missing_topic")
def _(ctx):
    c = ctx.client()
    t = ctx.topic()
    c.send(wire.subscribe(1, t, req=1, positions=[(None, 1)]))
    e = closes(c, ERR["ERR_MISSING_FIELD"], ref=1)
    check("topic" in e.text, "text must name the field: %r", e.text)


@test("s04_6_position_missing_seq")
def _(ctx):
    c = ctx.client()
    t = ctx.topic()
    c.send(wire.subscribe(1, t, req=1, positions=[(t, None)]))
    e = closes(c, ERR["ERR_MISSING_FIELD"], ref=1)
    check("seq" in e.text, "text must name the field: %r", e.text)


@test("s04_6_position_invalid_topic")
def _(ctx):
    """An invalid Position.topic -> ERR_INVALID_TOPIC, close (also a wildcard)."""
    t = ctx.topic()
    for bad in ("a..b", t + ".*", t + ".>", "a b", ""):
        c = ctx.client()
        c.send(wire.subscribe(1, t + ".>", req=1, positions=[(bad, 1)]))
        try:
            closes(c, ERR["ERR_INVALID_TOPIC"], ref=1)
        except AssertionError as e:
            raise AssertionError("Position.topic %r: %s" % (bad, e))


@test("s04_6_position_not_matched")
def _(ctx):
    """A valid Position.topic the filter does not match -> ERR_BAD_REQUEST with
    sid, stays open; no subscription."""
    c = ctx.client()
    t = ctx.topic()
    c.send(wire.subscribe(2, t + ".*", req=1, positions=[(t + ".a.b", 1)]))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=1, sid=2)
    sub(c, 2, t + ".*")


@test("s04_6_position_seq_0")
def _(ctx):
    """A position's seq of 0 -> ERR_BAD_REQUEST (stays open)."""
    c = ctx.client()
    t = ctx.topic()
    c.send(wire.subscribe(2, t, req=1, positions=[(t, 0)]))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=1, sid=2)


# ------------------------------------------------------------------ §4.7 Unsubscribe

@test("s04_7_unsubscribe")
def _(ctx):
    """UNSUBSCRIBE: ACK (no seq); nothing for the sid after the ACK; the sid can
    be reused."""
    t = ctx.topic()
    c = ctx.client()
    sub(c, 1, t)
    sub(c, 2, t)        # witness on the same connection
    p = ctx.client()
    publish_acked(p, t, [b"a"])
    d = delivers(c, 2)
    eq(sorted(f.sid for f in d), [1, 2], "sids")
    a = c.request(wire.unsubscribe(1, req=7))
    check(not a.HasField("seq"), "ACK of UNSUBSCRIBE carries seq")
    publish_acked(p, t, [b"b"], req0=2)
    got = c.collect_until(lambda f: kind(f) == "deliver" and f.sid == 2, what="witness")
    got += c.barrier()
    eq([describe(f) for f in got if kind(f) == "deliver" and f.sid == 1], [],
       "DELIVERs for the closed sid")
    sub(c, 1, t + ".x")   # reuse
    publish_acked(p, t + ".x", [b"c"])
    eq(delivers(c, 1, sid=1)[0].deliver.topic, t + ".x", "topic for the reused sid")


@test("s04_7_unsubscribe_queued_before_ack")
def _(ctx):
    """DELIVERs already queued for the sid come before the UNSUBSCRIBE's ACK,
    none after it."""
    t = ctx.topic()
    c = ctx.client()
    sub(c, 1, t)
    sub(c, 2, t)
    p = ctx.client()
    p.send(*[wire.publish(t, b"m", req=i + 1) for i in range(100)])
    c.send(wire.unsubscribe(1, req=50))
    before = c.collect_until(lambda f: kind(f) == "ack", timeout=5, what="UNSUBSCRIBE ACK")
    eq(before[-1].ack.ref, 50, "ACK ref")
    for _ in range(100):
        p.expect("ack")
    got = []
    if not any(kind(f) == "deliver" and f.sid == 2 and f.deliver.seq == 100 for f in before):
        got = c.collect_until(lambda f: kind(f) == "deliver" and f.sid == 2 and
                              f.deliver.seq == 100, timeout=5, what="witness seq 100")
    got += c.barrier()
    late = [describe(f) for f in got if kind(f) == "deliver" and f.sid == 1]
    eq(late, [], "DELIVERs for sid 1 after its UNSUBSCRIBE ACK")


@test("s04_7_unsubscribe_not_open")
def _(ctx):
    """UNSUBSCRIBE of a sid not open -> ERR_BAD_SID naming it, stays open."""
    c = ctx.client()
    c.send(wire.unsubscribe(12, req=3))
    stays_open(c, ERR["ERR_BAD_SID"], ref=3, sid=12)


@test("s04_7_unsubscribe_missing_sid")
def _(ctx):
    c = ctx.client()
    c.send(wire.unsubscribe(None, req=3))
    e = closes(c, ERR["ERR_MISSING_FIELD"], ref=3)
    check("sid" in e.text, "text must name the field: %r", e.text)


# ------------------------------------------------------------------ §4.8 Deliver

@test("s04_8_deliver_fields")
def _(ctx):
    """DELIVER: topic, seq, payload, time_ns (CLOCK_REALTIME when the broker
    received the PUBLISH) always; replay only when true; Frame.sid set. The
    same time_ns for every subscriber."""
    t = ctx.topic()
    a, b = ctx.client(), ctx.client()
    sub(a, 1, t)
    sub(b, 70000, t)
    p = ctx.client()
    t0 = time.time_ns()
    seqs, _ = publish_acked(p, t, [b"hello"])
    t1 = time.time_ns()
    da = delivers(a, 1, sid=1)[0]
    db = delivers(b, 1, sid=70000)[0]
    for d in (da, db):
        for fld in ("topic", "seq", "payload", "time_ns"):
            check(d.deliver.HasField(fld), "Deliver.%s absent (§4.8: always)", fld)
        check(not d.deliver.HasField("replay"), "live DELIVER has replay set (only when true)")
        eq((d.deliver.topic, d.deliver.seq, d.deliver.payload), (t, seqs[0], b"hello"), "DELIVER")
    check(t0 - 2_000_000 <= da.deliver.time_ns <= t1 + 2_000_000,
          "time_ns %d not between the PUBLISH (%d) and its ACK (%d)", da.deliver.time_ns, t0, t1)
    eq(db.deliver.time_ns, da.deliver.time_ns, "time_ns of the second subscriber")


# ------------------------------------------------------------------ §4.10 Ping/Pong

@test("s04_10_ping_pong")
def _(ctx):
    """The broker answers PING with PONG echoing the nonce (also 0 and 2^64-1);
    a PING without nonce gets a PONG without nonce; req is ignored (no ACK)."""
    c = ctx.client()
    for n in (0, 1, 123456789, 2**64 - 1):
        c.send(wire.ping(n))
        f = c.expect("pong")
        check(f.pong.HasField("nonce"), "PONG without nonce for PING %d", n)
        eq(f.pong.nonce, n, "PONG nonce")
    c.send(wire.ping(None))
    f = c.expect("pong")
    check(not f.pong.HasField("nonce"), "PONG has a nonce for a PING without one (§4.10)")
    c.send(wire.ping(5, req=9))
    eq(c.expect("pong").pong.nonce, 5, "PONG nonce")
    eq(c.barrier(), [], "frames after the PONG of a PING with req (no ACK, §5)")


@test("s04_10_unsolicited_pong_ignored")
def _(ctx):
    """A PONG from the client (no PING asked for it) is fine: stays open."""
    c = ctx.client()
    c.send(wire.pong(4), wire.pong(None))
    c.assert_open()
    p = wire.pong(5)
    p.req = 6
    c.send(p)
    eq(c.barrier(), [], "answers to a PONG with req (§4.10: req is ignored)")


# ------------------------------------------------------------------ §4.13 Repair

def _repair_setup(ctx, n=5):
    t = ctx.topic()
    seqs, _ = publish_acked(ctx.client(name="publisher"), t, [b"r%d" % i for i in range(1, n + 1)])
    eq(seqs, list(range(1, n + 1)), "seqs")
    c = ctx.client()
    sub(c, 1, t)
    return t, c


@test("s04_13_repair_served")
def _(ctx):
    """REPAIR of retained messages: one DELIVER replay=true each, Frame.sid =
    sid, payload and time_ns as published, then the ACK (no seq). Counted in
    fanout_repairs_served_total."""
    b = ctx.b
    before = b.metric("fanout_repairs_served_total")
    check(before is not None, "fanout_repairs_served_total missing")
    t = ctx.topic()
    live = ctx.client()
    sub(live, 1, t)
    seqs, _ = publish_acked(ctx.client(name="publisher"), t, [b"r1", b"r2", b"r3", b"r4", b"r5"])
    orig = {f.deliver.seq: f.deliver for f in delivers(live, 5)}
    c = ctx.client()
    sub(c, 3, t)
    c.send(wire.repair(3, t, 2, 4, req=11))
    d = delivers(c, 3, sid=3)
    for f, s in zip(d, (2, 3, 4)):
        eq(f.deliver.seq, s, "repaired seq")
        check(f.deliver.replay, "repaired DELIVER without replay=true")
        eq((f.deliver.topic, f.deliver.payload, f.deliver.time_ns),
           (t, orig[s].payload, orig[s].time_ns), "repaired DELIVER %d fields" % s)
    a = c.expect("ack")
    eq(a.ack.ref, 11, "ACK ref")
    check(not a.ack.HasField("seq"), "ACK of REPAIR carries seq")
    c.send(wire.repair(3, t, 5, 5))
    delivers(c, 1, sid=3)
    eq(c.barrier(), [], "frames after a REPAIR without req")
    b.wait_metric("fanout_repairs_served_total", lambda v: v > before, what="> %s" % before)


@test("s04_13_repair_unassigned_ignored")
def _(ctx):
    """Sequence numbers not yet assigned are ignored: REPAIR 4..20 of a topic
    at seq 5 gives DELIVER 4, 5 and the ACK; a range wholly past the end, and a
    topic that does not exist, give only the ACK (no GAP)."""
    t, c = _repair_setup(ctx)
    c.send(wire.repair(1, t, 4, 20, req=2))
    got = c.collect_until(lambda f: kind(f) == "ack", what="ACK")
    eq([(kind(f), f.deliver.seq if kind(f) == "deliver" else f.ack.ref) for f in got],
       [("deliver", 4), ("deliver", 5), ("ack", 2)], "frames")
    c.send(wire.repair(1, t, 6, 4100, req=3))
    got = c.collect_until(lambda f: kind(f) == "ack", what="ACK")
    eq([describe(f) for f in got[:-1]], [], "frames before the ACK of a tail probe")
    sub(c, 2, ctx.topic("nothing"))
    c.send(wire.repair(2, ctx.topic("nothing"), 1, 10, req=4))
    got = c.collect_until(lambda f: kind(f) == "ack", what="ACK")
    eq([describe(f) for f in got[:-1]], [], "frames before the ACK for a topic that does not exist")
    eq(got[-1].ack.ref, 4, "ACK ref")


@test("s04_13_repair_wildcard_subscription")
def _(ctx):
    """The sid may be any open subscription whose filter matches the topic."""
    t = ctx.topic("a")
    publish_acked(ctx.client(), t, [b"1", b"2"])
    c = ctx.client()
    sub(c, 9, ctx.topic(">"))
    c.send(wire.repair(9, t, 1, 2, req=1))
    eq([f.deliver.seq for f in delivers(c, 2, sid=9)], [1, 2], "seqs")
    eq(c.expect("ack").ack.ref, 1, "ACK ref")


def _repair_missing(field):
    def t(ctx):
        tp, c = _repair_setup(ctx, 1)
        args = dict(sid=1, topic=tp, first=1, last=1)
        args[field] = None
        c.send(wire.repair(req=6, **args))
        e = closes(c, ERR["ERR_MISSING_FIELD"], ref=6)
        check(field in e.text, "text must name the field %r: %r", field, e.text)
    return t


for _f in ("sid", "topic", "first", "last"):
    test("s04_13_repair_missing_%s" % _f)(_repair_missing(_f))


@test("s04_13_repair_sid_not_open")
def _(ctx):
    t, c = _repair_setup(ctx, 1)
    c.send(wire.repair(2, t, 1, 1, req=3))
    stays_open(c, ERR["ERR_BAD_SID"], ref=3, sid=2)


@test("s04_13_repair_filter_does_not_match")
def _(ctx):
    """A valid topic the subscription's filter does not match -> ERR_BAD_REQUEST
    with sid, stays open."""
    t, c = _repair_setup(ctx, 1)
    c.send(wire.repair(1, t + ".x", 1, 1, req=3))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=3, sid=1)


@test("s04_13_repair_first_after_last")
def _(ctx):
    t, c = _repair_setup(ctx, 3)
    c.send(wire.repair(1, t, 3, 2, req=3))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=3, sid=1)


@test("s04_13_repair_first_0")
def _(ctx):
    """first >= 1: a 0 sequence number is ERR_BAD_REQUEST (stays open)."""
    t, c = _repair_setup(ctx, 3)
    c.send(wire.repair(1, t, 0, 2, req=3))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=3, sid=1)


@test("s04_13_repair_range_limit")
def _(ctx):
    """At most 100000 sequences per REPAIR: 100000 is served, 100001 is
    ERR_BAD_REQUEST (stays open)."""
    t, c = _repair_setup(ctx, 3)
    c.send(wire.repair(1, t, 1, 100000, req=3))
    eq(len(delivers(c, 3, sid=1)), 3, "DELIVERs")
    eq(c.expect("ack").ack.ref, 3, "ACK ref")
    c.send(wire.repair(1, t, 1, 100001, req=4))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=4, sid=1)
    c.send(wire.repair(1, t, 2**63, 2**64 - 1, req=5))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=5, sid=1)


@test("s04_13_repair_invalid_topic")
def _(ctx):
    """An invalid REPAIR topic -> ERR_INVALID_TOPIC, close (wildcards too)."""
    t = ctx.topic()
    for bad in ("a..b", t + ".*", t + ".>", "a b", "", "x" * 256):
        c = ctx.client()
        sub(c, 1, ">")
        c.send(wire.repair(1, bad, 1, 1, req=2))
        try:
            closes(c, ERR["ERR_INVALID_TOPIC"], ref=2)
        except AssertionError as e:
            raise AssertionError("Repair.topic %r: %s" % (bad[:20], e))


# ------------------------------------------------------------------ §5

@test("s05_acks_in_request_order")
def _(ctx):
    """Requests of one connection are answered in the order received, whatever
    their kind."""
    c = ctx.client()
    t = ctx.topic()
    c.send(wire.publish(t, b"1", req=1), wire.subscribe(1, t, req=2),
           wire.publish(t, b"2", req=3), wire.repair(1, t, 1, 2, req=4),
           wire.unsubscribe(1, req=5), wire.publish(t, b"3", req=6))
    got = c.collect_until(lambda f: kind(f) == "ack" and f.ack.ref == 6, what="ACK 6")
    acks = [f.ack.ref for f in got if kind(f) == "ack"]
    eq(acks, [1, 2, 3, 4, 5, 6], "ACK order")
    other = [describe(f) for f in got if kind(f) not in ("ack", "deliver")]
    eq(other, [], "other frames")
    seqs = {f.ack.ref: f.ack.seq for f in got if kind(f) == "ack" and f.ack.HasField("seq")}
    eq(seqs, {1: 1, 3: 2, 6: 3}, "ACK seqs (only PUBLISH ACKs carry one)")


@test("s05_error_answers_in_order")
def _(ctx):
    """A failing request is answered by ERROR with ref = req instead of the ACK,
    in its place in the order."""
    c = ctx.client()
    t = ctx.topic()
    c.send(wire.publish(t, b"1", req=1), wire.unsubscribe(9, req=2),
           wire.publish(t, b"2", req=3))
    a = c.expect("ack")
    eq(a.ack.ref, 1, "first answer")
    e = c.expect_error(ERR["ERR_BAD_SID"])
    eq(e.ref, 2, "Error.ref")
    eq(c.expect("ack").ack.ref, 3, "third answer")


@test("s05_req_zero_or_absent_no_ack")
def _(ctx):
    """req = 0 or absent: no ACK, but the PUBLISH happens."""
    t = ctx.topic()
    s = ctx.client()
    sub(s, 1, t)
    c = ctx.client()
    c.send(wire.publish(t, b"a", req=0), wire.publish(t, b"b"))
    eq(c.barrier(), [], "answers to PUBLISH without req")
    eq([f.deliver.payload for f in delivers(s, 2)], [b"a", b"b"], "delivered")
    eq(publish_acked(c, t, [b"c"])[0], [3], "next seq")


@test("s05_error_without_req_has_no_ref")
def _(ctx):
    """Errors are sent whether or not req was set; without req there is no ref."""
    c = ctx.client()
    c.send(wire.unsubscribe(3))
    stays_open(c, ERR["ERR_BAD_SID"], ref=None, sid=3)
    c.send(wire.unsubscribe(3, req=0))
    stays_open(c, ERR["ERR_BAD_SID"], ref=None, sid=3)


@test("s05_req_echoed")
def _(ctx):
    """req values are the client's business: any uint64 is echoed, in any order."""
    c = ctx.client()
    t = ctx.topic()
    reqs = [2**64 - 1, 5, 5, 1 << 40, 3]
    c.send(*[wire.publish(t, b"x", req=r) for r in reqs])
    eq([c.expect("ack").ack.ref for _ in reqs], reqs, "ACK refs")
