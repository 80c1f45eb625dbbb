"""§10 How DELIVER is built, §11 Slow consumers, §12 The memory cap,
§13 Keepalive."""
import struct
import threading

import wire
from harness import (ERR, check, closes, delivers, describe, eq, kind, pb, publish_acked,
                     stays_open, sub, test)

S = pb


# ------------------------------------------------------------------ §10

def split_deliver(body):
    """(prefix fields, shared body bytes) of a raw DELIVER frame body."""
    fs = wire.fields(body)
    shared = [f for f in fs if f[0] == 6]
    check(len(shared) == 1, "DELIVER body has %d Frame.deliver fields", len(shared))
    fld, wt, start, end, _ = shared[0]
    eq(wt, 2, "wire type of Frame.deliver")
    rest = [f for f in fs if f[0] != 6]
    return rest, body[start:end]


@test("s10_shared_body_identical")
def _(ctx):
    """The DELIVER frames two subscribers get for one message parse as normal
    Frames; their shared parts (the Frame.deliver field: key 0x32, length,
    Deliver) are byte for byte identical; the rest is only Frame.sid (key 0x78,
    varint), so the per-subscriber prefix is 6 to 10 bytes with the length."""
    t = ctx.topic()
    subs = []
    for sid in (1, 300000, 0xFFFFFFFF):
        c = ctx.client()
        c.keep_raw = True
        sub(c, sid, t)
        subs.append((sid, c))
    publish_acked(ctx.client(), t, [b"shared payload \x00\xff"])
    shared = []
    for sid, c in subs:
        f = delivers(c, 1, sid=sid)[0]
        body = c.raw_frames[-1]
        g = pb.Frame()
        g.ParseFromString(body)
        eq(g, f, "reparsed frame")
        rest, sh = split_deliver(body)
        eq([(x[0], x[1], x[4]) for x in rest], [(15, 0, sid)], "fields outside Frame.deliver")
        check(sh[0] == 0x32, "shared body starts with 0x%02x, not key 0x32", sh[0])
        prefix = 4 + len(body) - len(sh)
        check(6 <= prefix <= 10, "per-subscriber prefix of %d bytes (6 to 10)", prefix)
        shared.append(sh)
    for (sid, _), sh in zip(subs[1:], shared[1:]):
        eq(sh.hex(), shared[0].hex(), "shared body of sid %d vs sid 1" % sid)


@test("s10_deliver_field_layout")
def _(ctx):
    """fo_deliver_write_shared: Deliver {topic, seq, time_ns, [replay], payload},
    payload last; a replayed message gets its own shared body with replay
    before payload. GAP frames carry Frame.sid the same way."""
    t = ctx.topic()
    c = ctx.client()
    c.keep_raw = True
    sub(c, 1, t)
    publish_acked(ctx.client(), t, [b"a"])
    delivers(c, 1)
    _, sh = split_deliver(c.raw_frames[-1])
    inner = wire.fields(wire.fields(sh)[0][4])
    eq([x[0] for x in inner], [1, 2, 4, 3], "Deliver field order of a live DELIVER")
    c.send(wire.repair(1, t, 1, 1))
    delivers(c, 1)
    _, sh2 = split_deliver(c.raw_frames[-1])
    inner = wire.fields(wire.fields(sh2)[0][4])
    eq([x[0] for x in inner], [1, 2, 4, 5, 3], "Deliver field order of a replayed DELIVER")
    check(sh2 != sh, "the replayed DELIVER must have its own shared body")


# ------------------------------------------------------------------ §11

def flood(b, p, topic, metric, before, payload=b"x" * 1000, batch=20, limit=20000, timeout=10.0):
    """Publish batches (ACKed) until /metrics shows `metric` above `before`.
    Returns the number of messages published."""
    n = 0
    deadline = wire.now() + timeout
    while True:
        publish_acked(p, topic, [payload] * batch, req0=n + 1)
        n += batch
        v = b.metric(metric)
        if v is not None and v > before:
            return n
        check(n < limit and wire.now() < deadline,
              "%d messages published and %s still %s" % (n, metric, v))


def slow_drop(ctx, policy, one_per_run=False):
    b = ctx.b
    for m in ("fanout_drops_slow_consumer_total", "fanout_gaps_sent_total"):
        check(b.metric(m) is not None, "%s missing from /metrics" % m)
    drops0 = b.metric("fanout_drops_slow_consumer_total")
    gaps0 = b.metric("fanout_gaps_sent_total")
    t = ctx.topic()
    s = ctx.client(rcvbuf=4096)
    sub(s, 7, t, slow=policy)
    p = ctx.client(name="publisher")
    n = flood(b, p, t, "fanout_drops_slow_consumer_total", drops0)
    n += 1
    publish_acked(p, t, [b"last"], req0=n)
    got = s.collect_until(lambda f: kind(f) == "deliver" and f.deliver.seq == n, timeout=10,
                          what="DELIVER of the last message %d" % n)
    nxt, gaps, prev_gap = 1, 0, False
    for f in got:
        check(f.HasField("sid") and f.sid == 7, "frame for sid %s: %s", f.sid, describe(f))
        if kind(f) == "deliver":
            eq(f.deliver.seq, nxt, "next seq in the stream (deliveries and GAPs must cover "
               "1..%d in order, no overlap)" % n)
            nxt += 1
            prev_gap = False
        elif kind(f) == "gap":
            g = f.gap
            eq((g.topic, g.first, S.GapReason.Name(g.reason)), (t, nxt, "GAP_SLOW_CONSUMER"),
               "GAP {topic, first, reason}")
            check(g.last >= g.first, "GAP last %d < first %d", g.last, g.first)
            if prev_gap and one_per_run:
                raise AssertionError("GAP %d..%d right after a GAP ending at %d: one run of "
                                     "dropped messages reported by several GAPs (§11: one GAP "
                                     "per run)" % (g.first, g.last, g.first - 1))
            nxt = g.last + 1
            gaps += 1
            prev_gap = True
        else:
            raise AssertionError("unexpected %s" % describe(f))
    check(gaps >= 1, "no GAP though fanout_drops_slow_consumer_total grew")
    eq(s.barrier(), [], "frames after the last message")
    b.wait_metric("fanout_gaps_sent_total", lambda v: v > gaps0, what="> %s" % gaps0)


@test("s11_slow_drop_exact_gap", brokers="slow")
def _(ctx):
    """SLOW_DROP: a reader that does not read loses the oldest queued messages
    and is told exactly with GAP_SLOW_CONSUMER: deliveries and GAPs together
    cover every seq once, in order."""
    slow_drop(ctx, S.SLOW_DROP)


@test("s11_slow_drop_one_gap_per_run", brokers="slow")
def _(ctx):
    """"one GAP per run of consecutive sequence numbers dropped": no GAP
    follows another GAP that ends right before it."""
    slow_drop(ctx, S.SLOW_DROP, one_per_run=True)


@test("s11_slow_default_is_brokers_drop", brokers="slow")
def _(ctx):
    """SLOW_DEFAULT (and absent) = the broker's configured default (drop)."""
    slow_drop(ctx, S.SLOW_DEFAULT)


@test("s11_slow_disconnect", brokers="slow")
def _(ctx):
    """SLOW_DISCONNECT: ERROR {ERR_SLOW_CONSUMER, sid} and close; counted in
    fanout_slow_consumer_disconnects_total. Nothing is lost silently before it."""
    b = ctx.b
    m = "fanout_slow_consumer_disconnects_total"
    before = b.metric(m)
    check(before is not None, "%s missing" % m)
    t = ctx.topic()
    s = ctx.client(rcvbuf=4096)
    sub(s, 5, t, slow=S.SLOW_DISCONNECT)
    p = ctx.client(name="publisher")
    flood(b, p, t, m, before)
    got = s.wait_eof(timeout=10)
    check(got and kind(got[-1]) == "error", "last frame before EOF: %s",
          describe(got[-1]) if got else "none")
    e = got[-1].error
    eq(pb.ErrorCode.Name(e.code), "ERR_SLOW_CONSUMER", "Error.code")
    check(e.HasField("sid"), "ERROR ERR_SLOW_CONSUMER without sid (§4.11, §11)")
    eq(e.sid, 5, "Error.sid")
    d = [f for f in got[:-1]]
    for i, f in enumerate(d):
        check(kind(f) == "deliver", "frame %d: %s", i, describe(f))
        eq(f.deliver.seq, i + 1, "seq (no message may be skipped before the ERROR)")
    p.assert_open()


@test("s11_slow_block_loses_nothing", brokers="slow")
def _(ctx):
    """SLOW_BLOCK: nothing is dropped; the topic's publisher is paused
    (fanout_publishers_paused_total, fanout_congestions_total) and resumes when
    the reader drains."""
    b = ctx.b
    paused0 = b.metric("fanout_publishers_paused_total")
    cong0 = b.metric("fanout_congestions_total")
    check(paused0 is not None and cong0 is not None,
          "fanout_publishers_paused_total / fanout_congestions_total missing")
    t = ctx.topic()
    s = ctx.client(rcvbuf=4096)
    sub(s, 3, t, slow=S.SLOW_BLOCK)
    p = ctx.client(name="publisher")
    stop = threading.Event()
    state = {"sent": 0, "err": None}

    def send():
        # publish in pipelined batches until told to stop; a paused publisher
        # blocks in sendall (TCP pushback) until the reader drains
        try:
            p.sock.setblocking(True)
            p.sock.settimeout(20)
            while not stop.is_set() and state["sent"] < 30000:
                n = state["sent"]
                p.sock.sendall(b"".join(wire.enc(wire.publish(t, b"%06d" % (n + i) + b"b" * 994,
                                                              req=n + i + 1)) for i in range(100)))
                state["sent"] = n + 100
        except Exception as e:   # reported below
            state["err"] = e
    th = threading.Thread(target=send, daemon=True)
    th.start()
    try:
        b.wait_metric("fanout_publishers_paused_total", lambda v: v > paused0, timeout=10,
                      what="> %s" % paused0)
        b.wait_metric("fanout_congestions_total", lambda v: v > cong0, timeout=5)
    finally:
        stop.set()
    got = 0
    deadline = wire.now() + 20
    while th.is_alive() or got < state["sent"]:
        check(wire.now() < deadline, "reader has %d of %d messages", got, state["sent"])
        try:
            f = s.recv(timeout=0.2)
        except wire.Timeout:
            continue
        check(kind(f) == "deliver" and f.sid == 3, "got %s (nothing may be dropped)", describe(f))
        eq(f.deliver.seq, got + 1, "seq")
        eq(f.deliver.payload[:6], b"%06d" % got, "payload")
        got += 1
    check(state["err"] is None, "publisher's send failed: %s", state["err"])
    p.sock.setblocking(False)
    for i in range(state["sent"]):
        eq(p.expect("ack", timeout=5).ack.ref, i + 1, "publisher's ACK")
    s.assert_open()


# ------------------------------------------------------------------ §12

@test("s12_memory_cap", brokers="memory")
def _(ctx):
    """max-memory (1 MiB; messages held in a non-reading subscriber's queue): a
    PUBLISH past the cap gets ERROR ERR_MEMORY_LIMIT with ref and no sequence
    number, the connection stays open; without req the ERROR has no ref; an
    invalid topic still gets ERR_INVALID_TOPIC; a large frame in flight gets
    ERR_MEMORY_LIMIT and a close; once memory is freed the retry succeeds with
    the next sequence number."""
    b = ctx.b
    m = "fanout_publish_refused_memory_total"
    before = b.metric(m)
    check(before is not None, "%s missing" % m)
    t = ctx.topic()
    s = ctx.client(rcvbuf=4096)
    sub(s, 1, t)
    p = ctx.client(name="publisher")
    payload = b"M" * 4096
    req, last_seq = 0, 0
    refused = None
    deadline = wire.now() + 10
    while refused is None:
        check(wire.now() < deadline and req < 5000, "no ERR_MEMORY_LIMIT after %d publishes", req)
        req += 1
        p.send(wire.publish(t, payload, req=req))
        f = p.recv()
        if kind(f) == "ack":
            eq(f.ack.ref, req, "ACK ref")
            last_seq = f.ack.seq
        else:
            check(kind(f) == "error" and f.error.code == ERR["ERR_MEMORY_LIMIT"],
                  "got %s", describe(f))
            refused = f.error
    eq(refused.ref, req, "Error.ref of the refused PUBLISH")
    p.assert_open()
    p.send(wire.publish(t, payload))
    stays_open(p, ERR["ERR_MEMORY_LIMIT"], ref=None)
    c = ctx.client()
    c.send(wire.publish("bad..topic", payload, req=1))
    closes(c, ERR["ERR_INVALID_TOPIC"], ref=1)
    big = ctx.client()
    # all but the last byte of a 900 KiB frame: more than what is left of the
    # cap however much of the subscriber's queue the kernel has taken (a
    # short prefix could fit in what a socket buffer freed, and then wait)
    big.send_raw(struct.pack(">I", 900 * 1024) + b"\x1a" + b"\0" * (900 * 1024 - 2))
    closes(big, ERR["ERR_MEMORY_LIMIT"])
    b.wait_metric(m, lambda v: v > before)
    # drain the subscriber: it gets seqs 1..last_seq and nothing refused
    d = delivers(s, last_seq, sid=1, timeout=10)
    eq([f.deliver.seq for f in d], list(range(1, last_seq + 1)), "delivered seqs")
    eq(s.barrier(), [], "frames after the accepted messages (refused ones are not delivered)")
    deadline = wire.now() + 5
    while True:
        req += 1
        p.send(wire.publish(t, b"retry", req=req))
        f = p.recv()
        if kind(f) == "ack":
            eq(f.ack.seq, last_seq + 1, "seq of the retry (refused publishes took none)")
            break
        check(kind(f) == "error" and f.error.code == ERR["ERR_MEMORY_LIMIT"], "got %s", describe(f))
        check(wire.now() < deadline, "still refused 5 s after the queue drained")
        s.barrier()
    eq(delivers(s, 1, sid=1)[0].deliver.payload, b"retry", "retried message delivered")


# ------------------------------------------------------------------ §13

@test("s13_broker_pings_then_idle_timeout", brokers="keepalive")
def _(ctx):
    """A silent peer gets PING after ping-interval (200 ms), again every
    interval, then ERROR ERR_IDLE_TIMEOUT and a close after idle-timeout (1 s);
    counted in fanout_idle_timeouts_total."""
    b = ctx.b
    before = b.metric("fanout_idle_timeouts_total")
    check(before is not None, "fanout_idle_timeouts_total missing")
    c = ctx.connect()
    c.auto_pong = False
    c.send(wire.hello())
    t0 = wire.now()
    c.expect("welcome")
    pings = []
    while True:
        f = c.recv(timeout=3)
        if kind(f) == "ping":
            pings.append(wire.now() - t0)
            continue
        break
    dt = wire.now() - t0
    check(len(pings) >= 2, "%d PINGs during the silence (want one every 200 ms)", len(pings))
    check(pings[0] >= 0.15, "first PING after %.3fs, before ping-interval", pings[0])
    eq(kind(f), "error", "frame after the PINGs")
    eq(pb.ErrorCode.Name(f.error.code), "ERR_IDLE_TIMEOUT", "Error.code")
    check(dt >= 0.95, "closed after %.3fs of silence, before idle-timeout (1 s)", dt)
    c.expect_closed()
    b.wait_metric("fanout_idle_timeouts_total", lambda v: v > before)


@test("s13_pong_keeps_connection", brokers="keepalive")
def _(ctx):
    """A client that answers every PING with a PONG (same nonce) stays connected
    well past idle-timeout (2.5 s > 1 s)."""
    c = ctx.client()
    c.auto_pong = False
    end = wire.now() + 2.5
    pings = 0
    while wire.now() < end:
        try:
            f = c.recv(timeout=max(0.0, end - wire.now()))
        except wire.Timeout:
            break
        check(kind(f) == "ping", "got %s", describe(f))
        pings += 1
        c.send(wire.pong(f.ping.nonce) if f.ping.HasField("nonce") else wire.pong())
    check(pings >= 3, "only %d PINGs in 2.5 s", pings)
    c.barrier()


@test("s13_ping_answered")
def _(ctx):
    """The broker answers a client's PING with a PONG echoing its nonce, also
    in the middle of other traffic."""
    c = ctx.client()
    t = ctx.topic()
    sub(c, 1, t)
    c.send(wire.publish(t, b"x", req=1), wire.ping(99), wire.publish(t, b"y", req=2))
    got = c.collect_until(lambda f: kind(f) == "ack" and f.ack.ref == 2, what="ACK 2")
    pongs = [f.pong.nonce for f in got if kind(f) == "pong"]
    eq(pongs, [99], "PONG nonces")


@test("s09_dropped_not_handed_to_another_member", brokers="slow")
def _(ctx):
    """§9: a message dropped from a queue member's output queue is reported to
    that member with GAP and not handed to another member; §4.12: a GAP names
    only sequence numbers that subscription would otherwise have received.
    Two members that do not read: their DELIVERs and GAPs together cover
    every seq exactly once."""
    b = ctx.b
    drops0 = b.metric("fanout_drops_slow_consumer_total")
    t = ctx.topic()
    ms = []
    for _ in range(2):
        s = ctx.client(rcvbuf=4096)
        sub(s, 1, t, queue="q", slow=S.SLOW_DROP)
        ms.append(s)
    p = ctx.client(name="publisher")
    n = flood(b, p, t, "fanout_drops_slow_consumer_total", drops0)
    owner = {}

    def take(i, f):
        if kind(f) == "deliver":
            rng = [f.deliver.seq]
        elif kind(f) == "gap":
            rng = range(f.gap.first, f.gap.last + 1)
        else:
            raise AssertionError("unexpected %s" % describe(f))
        for q in rng:
            check(q not in owner, "seq %d reported twice (%s to member %d, %s to member %d)",
                  q, owner.get(q, ("", 0))[0], owner.get(q, ("", 0))[1] + 1, kind(f), i + 1)
            owner[q] = (kind(f), i)
    # read both members until every seq is accounted for, then a barrier on
    # each (anything reported twice would come before its PONG)
    deadline = wire.now() + 10
    while len(owner) < n:
        check(wire.now() < deadline, "%d of %d seqs delivered or covered by a GAP", len(owner), n)
        for i, s in enumerate(ms):
            try:
                take(i, s.recv(timeout=0.02))
            except wire.Timeout:
                pass
    for i, s in enumerate(ms):
        for f in s.barrier():
            take(i, f)
    eq(sorted(owner), list(range(1, n + 1)), "seqs delivered or covered by a GAP")
