"""§8 Start positions and replay (incl. GAP_EVICTED), §9 Queue groups."""
import wire
from harness import (ANY, ERR, check, closes, delivers, describe, eq, kind, pb, publish_acked,
                     stays_open, sub, test)

S = pb


def seqs_of(frames):
    return [f.deliver.seq for f in frames]


def check_replay(frames, want_seqs, topic=None):
    eq(seqs_of(frames), want_seqs, "replayed seqs")
    for f in frames:
        check(f.deliver.replay, "replayed DELIVER seq %d without replay=true (§8)", f.deliver.seq)
        if topic:
            eq(f.deliver.topic, topic, "topic")


def check_live(f, seq):
    eq(f.deliver.seq, seq, "live seq")
    check(not f.deliver.HasField("replay"), "live DELIVER seq %d has replay set", seq)


def fill(ctx, topic, n, key=None, payload=b"p"):
    c = ctx.client(key, name="publisher")
    seqs, _ = publish_acked(c, topic, [payload + b"%d" % i for i in range(1, n + 1)])
    eq(seqs, list(range(1, n + 1)), "seqs of a new topic")
    return c


def expect_gap(c, sid, topic, first, last, reason):
    f = c.expect("gap")
    check(f.HasField("sid"), "GAP without Frame.sid (§2: always on GAP)")
    g = f.gap
    for fld in ("topic", "first", "last", "reason"):
        check(g.HasField(fld), "Gap.%s absent (§4.12: always)", fld)
    eq((f.sid, g.topic, g.first, g.last, S.GapReason.Name(g.reason)),
       (sid, topic, first, last, S.GapReason.Name(reason)), "GAP {sid, topic, first, last, reason}")


# ------------------------------------------------------------------ §8

@test("s08_start_new")
def _(ctx):
    """START_NEW (and the default): nothing replayed, later messages follow."""
    t = ctx.topic()
    p = fill(ctx, t, 3)
    for sid, start in ((1, S.START_NEW), (2, None)):
        c = ctx.client()
        sub(c, sid, t, start=start)
        eq(c.barrier(), [], "frames after SUBSCRIBE")
        publish_acked(p, t, [b"new"], req0=100 + sid)
        check_live(delivers(c, 1, sid=sid)[0], 3 + sid)


@test("s08_start_earliest")
def _(ctx):
    """START_EARLIEST: every retained message oldest first, replay=true, then live."""
    t = ctx.topic()
    p = fill(ctx, t, 4)
    c = ctx.client()
    sub(c, 1, t, start=S.START_EARLIEST)
    check_replay(delivers(c, 4, sid=1), [1, 2, 3, 4], t)
    publish_acked(p, t, [b"live"], req0=50)
    check_live(delivers(c, 1, sid=1)[0], 5)


@test("s08_start_seq")
def _(ctx):
    """START_SEQ S: retained messages with seq >= S, then live ones."""
    t = ctx.topic()
    p = fill(ctx, t, 5)
    c = ctx.client()
    sub(c, 1, t, start=S.START_SEQ, start_seq=3)
    d = delivers(c, 3, sid=1)
    check_replay(d, [3, 4, 5], t)
    eq([f.deliver.payload for f in d], [b"p3", b"p4", b"p5"], "payloads")
    publish_acked(p, t, [b"live"], req0=50)
    check_live(delivers(c, 1, sid=1)[0], 6)


@test("s08_start_seq_past_end")
def _(ctx):
    """S past the topic's last sequence number: nothing to replay (no GAP)."""
    t = ctx.topic()
    p = fill(ctx, t, 2)
    c = ctx.client()
    sub(c, 1, t, start=S.START_SEQ, start_seq=10)
    eq(c.barrier(), [], "frames after SUBSCRIBE")
    publish_acked(p, t, [b"live"], req0=50)
    check_live(delivers(c, 1, sid=1)[0], 3)


@test("s08_start_seq_missing")
def _(ctx):
    """START_SEQ without start_seq -> ERR_MISSING_FIELD naming it, close."""
    c = ctx.client()
    c.send(wire.subscribe(1, ctx.topic(), req=2, start=S.START_SEQ))
    e = closes(c, ERR["ERR_MISSING_FIELD"], ref=2)
    check("start_seq" in e.text, "text must name the field: %r", e.text)


@test("s08_start_seq_0")
def _(ctx):
    """start_seq 0 -> ERR_BAD_REQUEST with sid, stays open."""
    c = ctx.client()
    c.send(wire.subscribe(4, ctx.topic(), req=2, start=S.START_SEQ, start_seq=0))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=2, sid=4)


@test("s08_start_seq_ignored_otherwise")
def _(ctx):
    """start_seq is ignored without START_SEQ."""
    t = ctx.topic()
    fill(ctx, t, 3)
    c = ctx.client()
    sub(c, 1, t, start=S.START_NEW, start_seq=2)
    sub(c, 2, t, start=S.START_EARLIEST, start_seq=3)
    check_replay(delivers(c, 3, sid=2), [1, 2, 3])
    eq(c.barrier(), [], "frames for the START_NEW subscription")


@test("s08_replay_per_topic_then_live")
def _(ctx):
    """With a wildcard filter, each matching topic replays in sequence order,
    before the live messages of that topic."""
    a, b = ctx.topic("a"), ctx.topic("b")
    pa = fill(ctx, a, 3)
    fill(ctx, b, 2)
    c = ctx.client()
    sub(c, 1, ctx.topic("*"), start=S.START_EARLIEST)
    publish_acked(pa, a, [b"live"], req0=50)
    d = delivers(c, 6, sid=1)
    per = {}
    for f in d:
        per.setdefault(f.deliver.topic, []).append((f.deliver.seq, bool(f.deliver.replay)))
    eq(per, {a: [(1, True), (2, True), (3, True), (4, False)], b: [(1, True), (2, True)]},
       "per topic (seq, replay)")


@test("s08_replay_meets_live_exactly")
def _(ctx):
    """Subscribing with START_EARLIEST while a publisher is busy: replay and live
    stream neither overlap nor leave a hole."""
    t = ctx.topic()
    p = ctx.client(name="publisher")
    n = 600
    p.send(*[wire.publish(t, b"%d" % i, req=i + 1) for i in range(n)])
    p.expect("ack")   # the topic exists and is being filled
    c = ctx.client()
    sub(c, 1, t, start=S.START_EARLIEST)
    for _ in range(n - 1):
        p.expect("ack", timeout=5)
    d = delivers(c, n, sid=1, timeout=5)
    eq(seqs_of(d), list(range(1, n + 1)), "seqs (no overlap, no hole)")
    flags = [bool(f.deliver.replay) for f in d]
    k = flags.index(False) if False in flags else n
    check(all(flags[:k]) and not any(flags[k:]), "replayed messages must all come before live ones")
    eq(c.barrier(), [], "more frames")


@test("s08_positions")
def _(ctx):
    """positions: for a listed topic replay from its seq whatever start says;
    other topics follow start."""
    a, b = ctx.topic("a"), ctx.topic("b")
    fill(ctx, a, 5)
    fill(ctx, b, 3)
    f = ctx.topic("*")
    for sid, start, start_seq, want in (
            (1, None, None, {a: [4, 5]}),
            (2, S.START_EARLIEST, None, {a: [4, 5], b: [1, 2, 3]}),
            (3, S.START_SEQ, 3, {a: [4, 5], b: [3]})):
        c = ctx.client()
        sub(c, sid, f, start=start, start_seq=start_seq, positions=[(a, 4)])
        n = sum(len(v) for v in want.values())
        d = delivers(c, n, sid=sid) + c.barrier()
        got = {}
        for x in d:
            check(kind(x) == "deliver" and x.deliver.replay, "got %s", describe(x))
            got.setdefault(x.deliver.topic, []).append(x.deliver.seq)
        eq(got, want, "replay with start=%s positions=[(a,4)]" % start)


@test("s08_queue_and_multicast_start_new_only")
def _(ctx):
    """Queue-group and multicast subscriptions take START_NEW only and no
    positions: else ERR_BAD_REQUEST with sid (stays open)."""
    t = ctx.topic()
    fill(ctx, t, 1)
    c = ctx.client()
    cases = [dict(queue="q", start=S.START_EARLIEST), dict(queue="q", start=S.START_SEQ, start_seq=1),
             dict(queue="q", positions=[(t, 1)]),
             dict(delivery=S.DELIVERY_MULTICAST, start=S.START_EARLIEST),
             dict(delivery=S.DELIVERY_MULTICAST, start=S.START_SEQ, start_seq=1),
             dict(delivery=S.DELIVERY_MULTICAST, positions=[(t, 1)])]
    for i, kw in enumerate(cases):
        c.send(wire.subscribe(7, t, req=i + 1, **kw))
        try:
            stays_open(c, ERR["ERR_BAD_REQUEST"], ref=i + 1, sid=7)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (kw, e))
    sub(c, 7, t, queue="q", start=S.START_NEW)


@test("s08_replay_keeps_time_ns")
def _(ctx):
    """time_ns is the same for a replay of the message as live."""
    t = ctx.topic()
    live = ctx.client()
    sub(live, 1, t)
    fill(ctx, t, 2)
    orig = [f.deliver.time_ns for f in delivers(live, 2)]
    c = ctx.client()
    sub(c, 1, t, start=S.START_EARLIEST)
    eq([f.deliver.time_ns for f in delivers(c, 2)], orig, "time_ns of the replayed messages")


@test("s08_replay_under_slow_policy", brokers="slow")
def _(ctx):
    """Replay goes through the output queue under the same slow-consumer
    policy: a non-reading START_EARLIEST subscriber (DROP) of ~8 MB retained
    gets replayed DELIVERs and GAP_SLOW_CONSUMER that together cover every seq
    once, in order."""
    t = ctx.topic()
    p = ctx.client(name="publisher")
    n = 1000
    for k in range(0, n, 100):
        publish_acked(p, t, [b"%06d" % (k + i) + b"r" * 7994 for i in range(100)], req0=k + 1)
    s = ctx.client(rcvbuf=4096)
    sub(s, 4, t, start=S.START_EARLIEST, slow=S.SLOW_DROP)
    nxt, gaps = 1, 0
    deadline = wire.now() + 15
    while nxt <= n:
        check(wire.now() < deadline, "stream stopped at seq %d of %d", nxt, n)
        f = s.recv(timeout=5)
        check(f.sid == 4, "frame for sid %d", f.sid)
        if kind(f) == "deliver":
            eq(f.deliver.seq, nxt, "next seq (replay and GAPs cover 1..%d in order)" % n)
            check(f.deliver.replay, "replayed DELIVER without replay=true")
            nxt += 1
        elif kind(f) == "gap":
            eq((f.gap.first, pb.GapReason.Name(f.gap.reason)), (nxt, "GAP_SLOW_CONSUMER"),
               "GAP first, reason")
            nxt = f.gap.last + 1
            gaps += 1
        else:
            raise AssertionError("unexpected %s" % describe(f))
    eq(nxt, n + 1, "end of the stream")
    check(gaps >= 1, "no GAP: the replay did not overflow the 4 KiB output limit (test setup)")
    eq(s.barrier(), [], "more frames")


# -- eviction (retention broker: 5 messages, 4 KiB of payload per topic)

@test("s08_evicted_start_seq_gap", brokers="retention")
def _(ctx):
    """START_SEQ older than the oldest retained O: first GAP {S, O-1,
    GAP_EVICTED}, then the replay from O, then live."""
    t = ctx.topic()
    p = fill(ctx, t, 10)
    c = ctx.client()
    sub(c, 1, t, start=S.START_SEQ, start_seq=2)
    expect_gap(c, 1, t, 2, 5, S.GAP_EVICTED)
    check_replay(delivers(c, 5, sid=1), [6, 7, 8, 9, 10], t)
    publish_acked(p, t, [b"live"], req0=50)
    check_live(delivers(c, 1, sid=1)[0], 11)


@test("s08_evicted_position_gap", brokers="retention")
def _(ctx):
    """A position older than the oldest retained gets the GAP too."""
    t = ctx.topic()
    fill(ctx, t, 10)
    c = ctx.client()
    sub(c, 2, t, positions=[(t, 1)])
    expect_gap(c, 2, t, 1, 5, S.GAP_EVICTED)
    check_replay(delivers(c, 5, sid=2), [6, 7, 8, 9, 10], t)


@test("s08_start_seq_at_oldest_no_gap", brokers="retention")
def _(ctx):
    t = ctx.topic()
    fill(ctx, t, 10)
    c = ctx.client()
    sub(c, 1, t, start=S.START_SEQ, start_seq=6)
    check_replay(delivers(c, 5, sid=1), [6, 7, 8, 9, 10], t)
    eq(c.barrier(), [], "more frames")


@test("s08_evicted_start_earliest_no_gap", brokers="retention")
def _(ctx):
    """START_EARLIEST after eviction replays what is retained, with no GAP."""
    t = ctx.topic()
    fill(ctx, t, 10)
    c = ctx.client()
    sub(c, 1, t, start=S.START_EARLIEST)
    d = delivers(c, 5, sid=1, what="replay (a GAP first is wrong)")
    check_replay(d, [6, 7, 8, 9, 10], t)
    eq(c.barrier(), [], "more frames")


@test("s08_evicted_repair", brokers="retention")
def _(ctx):
    """REPAIR across the eviction: one GAP_EVICTED for the run no longer
    retained, DELIVER replay=true for the rest, then the ACK; counted in
    fanout_repairs_missed_total."""
    b = ctx.b
    before = b.metric("fanout_repairs_missed_total")
    check(before is not None, "fanout_repairs_missed_total missing")
    t = ctx.topic()
    fill(ctx, t, 10)
    c = ctx.client()
    sub(c, 1, t)
    c.send(wire.repair(1, t, 1, 8, req=3))
    expect_gap(c, 1, t, 1, 5, S.GAP_EVICTED)
    check_replay(delivers(c, 3, sid=1), [6, 7, 8], t)
    eq(c.expect("ack").ack.ref, 3, "ACK ref")
    c.send(wire.repair(1, t, 4, 14, req=4))
    expect_gap(c, 1, t, 4, 5, S.GAP_EVICTED)
    check_replay(delivers(c, 5, sid=1), [6, 7, 8, 9, 10], t)
    eq(c.expect("ack").ack.ref, 4, "ACK ref")
    b.wait_metric("fanout_repairs_missed_total", lambda v: v > before, what="> %s" % before)


@test("s08_retention_bytes", brokers="retention")
def _(ctx):
    """retention-bytes (4 KiB of payload): four 1500-byte messages leave the
    last two retained (START_SEQ 1: GAP 1..2, then 3 and 4)."""
    t = ctx.topic()
    fill(ctx, t, 4, payload=b"z" * 1499)
    c = ctx.client()
    sub(c, 1, t, start=S.START_SEQ, start_seq=1)
    expect_gap(c, 1, t, 1, 2, S.GAP_EVICTED)
    check_replay(delivers(c, 2, sid=1), [3, 4], t)
    eq(c.barrier(), [], "more frames")


# ------------------------------------------------------------------ §9

def group_share(ctx, conns, topic, n, sids, witness=99):
    """Publish n messages; on each connection (which has an ungrouped witness
    subscription `witness`), gather the DELIVERs per sid up to the witness's
    copy of the last message plus a PING barrier. Returns {(conn#, sid): [seq]}."""
    p = ctx.client(name="publisher")
    seqs, _ = publish_acked(p, topic, [b"m%d" % i for i in range(n)])
    last = seqs[-1]
    out = {}
    for i, c in enumerate(conns):
        got = c.collect_until(lambda f: kind(f) == "deliver" and f.sid == witness and
                              f.deliver.seq == last, timeout=5, what="witness seq %d" % last)
        got += c.barrier()
        for f in got:
            check(kind(f) == "deliver", "unexpected %s", describe(f))
            if f.sid != witness:
                out.setdefault((i, f.sid), []).append(f.deliver.seq)
    for key in out:
        check(key[1] in sids, "DELIVER for an unknown sid %s", key)
    return out


def members(ctx, n, topic, queue, sid=1, witness=99):
    conns = []
    for _ in range(n):
        c = ctx.client()
        sub(c, sid, topic, queue=queue)
        sub(c, witness, topic)
        conns.append(c)
    return conns


@test("s09_one_member_per_message_round_robin")
def _(ctx):
    """Each message goes to one member of the group; the broker spreads them
    round-robin (30 messages over 3 members: 10 each)."""
    t = ctx.topic()
    conns = members(ctx, 3, t, "workers")
    share = group_share(ctx, conns, t, 30, {1})
    allseqs = sorted(s for v in share.values() for s in v)
    eq(allseqs, list(range(1, 31)), "seqs over the group (each exactly once)")
    counts = sorted(len(share.get((i, 1), [])) for i in range(3))
    eq(counts, [10, 10, 10], "messages per member (round-robin)")


@test("s09_groups_and_ungrouped_each_get_a_copy")
def _(ctx):
    """Other subscriptions, ungrouped ones and other groups, get their own copy."""
    t = ctx.topic()
    conns = []
    for q in ("g", "g", "h", "h", None):
        c = ctx.client()
        sub(c, 1, t, queue=q)
        sub(c, 99, t)
        conns.append(c)
    share = group_share(ctx, conns, t, 20, {1})
    g = sorted(share.get((0, 1), []) + share.get((1, 1), []))
    h = sorted(share.get((2, 1), []) + share.get((3, 1), []))
    eq(g, list(range(1, 21)), "group g")
    eq(h, list(range(1, 21)), "group h")
    eq(share.get((4, 1)), list(range(1, 21)), "ungrouped subscription")


@test("s09_same_name_other_filter_is_another_group")
def _(ctx):
    """A group is (queue, filter): the same queue name with another filter is a
    different group, which gets its own copy."""
    t = ctx.topic("a")
    c1, c2 = ctx.client(), ctx.client()
    sub(c1, 1, t, queue="q")
    sub(c1, 99, t)
    sub(c2, 1, ctx.topic("*"), queue="q")
    sub(c2, 99, t)
    share = group_share(ctx, [c1, c2], t, 5, {1})
    eq(share.get((0, 1)), [1, 2, 3, 4, 5], "group (q, exact filter)")
    eq(share.get((1, 1)), [1, 2, 3, 4, 5], "group (q, wildcard filter)")


@test("s09_more_than_16_groups")
def _(ctx):
    """40 groups on one topic (on two connections): every group gets its copy."""
    t = ctx.topic()
    conns = []
    for k in range(2):
        c = ctx.client()
        for g in range(20):
            sub(c, g + 1, t, queue="grp%d" % (k * 20 + g))
        sub(c, 99, t)
        conns.append(c)
    share = group_share(ctx, conns, t, 3, set(range(1, 21)))
    missing = ["grp%d" % (k * 20 + g) for k in range(2) for g in range(20)
               if share.get((k, g + 1)) != [1, 2, 3]]
    check(not missing, "%d of 40 groups did not get every message: %s", len(missing),
          ", ".join(missing[:8]) + ("..." if len(missing) > 8 else ""))


@test("s09_member_unsubscribes")
def _(ctx):
    """A member that unsubscribes stops getting messages; the group goes on."""
    t = ctx.topic()
    a, b = members(ctx, 2, t, "q")
    b.request(wire.unsubscribe(1, req=5))
    share = group_share(ctx, [a, b], t, 6, {1})
    eq(share.get((0, 1)), [1, 2, 3, 4, 5, 6], "remaining member")
    eq(share.get((1, 1)), None, "unsubscribed member")


@test("s09_empty_queue_is_no_group")
def _(ctx):
    """queue absent or empty = no group: every such subscription gets a copy."""
    t = ctx.topic()
    c = ctx.client()
    sub(c, 1, t, queue="")
    sub(c, 2, t, queue="")
    sub(c, 99, t)
    share = group_share(ctx, [c], t, 3, {1, 2})
    eq((share.get((0, 1)), share.get((0, 2))), ([1, 2, 3], [1, 2, 3]), "copies")


@test("s09_queue_name_rules")
def _(ctx):
    """A queue name follows the topic character rules (1-255 bytes, no whitespace
    or control characters): a bad one gets ERR_BAD_REQUEST with sid (stays open)."""
    t = ctx.topic()
    c = ctx.client()
    good = ["a", "x" * 255, "grp.1", "Grüße", "a-b_c:d/e"]
    for i, q in enumerate(good):
        c.send(wire.subscribe(i + 1, t, req=i + 1, queue=q))
        f = c.recv()
        check(kind(f) == "ack", "queue %r refused: %s", q[:20], describe(f))
    bad = ["x" * 256, "a b", "a\tb", "a\x7f", "a\x01", " ", "a\n"]
    for i, q in enumerate(bad):
        c.send(wire.subscribe(50 + i, t, req=50 + i, queue=q))
        try:
            stays_open(c, ERR["ERR_BAD_REQUEST"], ref=50 + i, sid=50 + i)
        except AssertionError as e:
            raise AssertionError("queue %r: %s" % (q[:20], e))


@test("s09_queue_tcp_only")
def _(ctx):
    """Queue subscriptions take DELIVERY_TCP only."""
    c = ctx.client()
    c.send(wire.subscribe(3, ctx.topic(), req=1, queue="q", delivery=S.DELIVERY_MULTICAST))
    stays_open(c, ERR["ERR_BAD_REQUEST"], ref=1, sid=3)
    sub(c, 3, ctx.topic(), queue="q", delivery=S.DELIVERY_TCP)


@test("s09_nul_in_queue_bad_frame")
def _(ctx):
    """A NUL inside Subscribe.queue (not a topic or filter) is ERR_BAD_FRAME (closes)."""
    c = ctx.client()
    c.send(wire.subscribe(3, ctx.topic(), req=1, queue="a\x00b"))
    closes(c, ERR["ERR_BAD_FRAME"], ref=ANY)
