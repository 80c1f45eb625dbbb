"""§18 Multicast datagrams (and §4.3 McastGroup), on loopback: the broker
sends with --mcast-if 127.0.0.1 --mcast-loop 1, we join on 127.0.0.1.
When this machine's loopback cannot carry multicast at all (probed with our
own datagram first), every test here is SKIPPED, never passed."""
import hashlib
import os
import random
import struct
import select
import socket

import broker as brokermod
import harness
import wire
from harness import (Skip, check, delivers, describe, eq, kind, pb, publish_acked, sub, test)

S = pb
G1, G2 = "239.77.9.2", "239.77.9.1"   # G1 listed first: mc.a.>, G2: mc.>
MAX_DGRAM = 512
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


class Rx:
    """A receiver joined to one group on 127.0.0.1."""

    def __init__(self, group, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        except OSError:
            pass
        s.bind((group, port))
        mreq = socket.inet_aton(group) + socket.inet_aton("127.0.0.1")
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
        self.sock = s

    def recv(self, timeout):
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            raise wire.Timeout("no datagram within %.1fs" % timeout)
        return self.sock.recv(70000)

    def close(self):
        self.sock.close()


def udp_port(group, taken=()):
    for _ in range(50):
        p = brokermod.random_port(taken)
        try:
            Rx(group, p).close()
            return p
        except OSError:
            continue
    raise RuntimeError("no free UDP port for %s" % group)


_probe = {}


def multicast_works():
    """Send ourselves one datagram over loopback multicast. (ok, why)."""
    if "r" in _probe:
        return _probe["r"]
    group = "239.77.9.9"
    try:
        port = udp_port(group)
        rx = Rx(group, port)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        token = os.urandom(8)
        tx.sendto(token, (group, port))
        deadline = wire.now() + 1.0
        ok = False
        while not ok and wire.now() < deadline:
            try:
                ok = rx.recv(deadline - wire.now()) == token
            except wire.Timeout:
                break
        rx.close()
        tx.close()
        _probe["r"] = (ok, "" if ok else "a datagram sent to %s on 127.0.0.1 never came back" % group)
    except OSError as e:
        _probe["r"] = (False, "multicast on loopback: %s" % e)
    return _probe["r"]


def mcast_args(b):
    p1 = udp_port(G1)
    p2 = udp_port(G2, {p1})
    b.extra.update(p1=p1, p2=p2)
    return ["--mcast-group", "mc.a.>=%s:%d" % (G1, p1), "--mcast-group", "mc.>=%s:%d" % (G2, p2),
            "--mcast-if", "127.0.0.1", "--mcast-loop", "1", "--max-datagram", "%d" % MAX_DGRAM,
            "--retention-msgs", "4"]


harness.BROKERS["mcast"] = mcast_args


def mtest(name):
    def deco(fn):
        def run(ctx):
            ok, why = multicast_works()
            if not ok:
                raise Skip("multicast cannot be received on this machine's loopback (%s)" % why)
            b = ctx.b
            c = ctx.client()
            rx = {1: Rx(G1, b.extra["p1"]), 2: Rx(G2, b.extra["p2"])}
            try:
                fn(ctx, b, c, rx)
            finally:
                for r in rx.values():
                    r.close()
        return test(name, brokers="mcast")(run)
    return deco


def datagrams(rx, epoch, until, timeout=3.0):
    """Parse datagrams (from our broker: its epoch) until until(list of
    Datagram) is true; also checks each is at most max_datagram bytes."""
    got = []
    deadline = wire.now() + timeout
    while not until(got):
        try:
            raw = rx.recv(deadline - wire.now())
        except wire.Timeout:
            raise wire.Timeout("datagrams: condition not met within %.1fs; got %s" %
                               (timeout, [str(d).replace("\n", " ")[:120] for d in got[-3:]]))
        d = pb.Datagram()
        d.ParseFromString(raw)
        if d.epoch != epoch:
            continue          # another broker on this host using the group
        check(len(raw) <= MAX_DGRAM, "datagram of %d bytes > max_datagram %d", len(raw), MAX_DGRAM)
        check(len(d.msgs) >= 1, "datagram without messages")
        got.append(d)
    return got


def msgs_of(dgrams, topic=None):
    return [m for d in dgrams for m in d.msgs if topic is None or m.topic == topic]


def seen(topic, seqs):
    want = set(seqs)
    return lambda got: want <= {m.seq for m in msgs_of(got, topic)}


@mtest("s18_welcome_groups")
def _(ctx, b, c, rx):
    """WELCOME lists the groups in matching order (filter, address, port),
    max_datagram and the epoch."""
    w = c.welcome
    eq([(g.filter, g.address, g.port) for g in w.groups],
       [("mc.a.>", G1, b.extra["p1"]), ("mc.>", G2, b.extra["p2"])], "Welcome.groups")
    eq(w.max_datagram, MAX_DGRAM, "Welcome.max_datagram")


@mtest("s18_datagram_fields")
def _(ctx, b, c, rx):
    """One Datagram per UDP payload, no length prefix: epoch = Welcome.epoch,
    McastMsg {topic, seq = ACK.seq = Deliver.seq, payload}; oversize and size
    absent for a message that fits."""
    t = "mc.b.%s" % ctx.prefix
    s = ctx.client()
    sub(s, 1, t)
    seqs, _ = publish_acked(c, t, [b"hello", b""])
    got = datagrams(rx[2], c.welcome.epoch, seen(t, seqs))
    ms = msgs_of(got, t)
    eq([(m.seq, m.payload) for m in ms], list(zip(seqs, [b"hello", b""])), "McastMsg seq, payload")
    for m in ms:
        check(not m.HasField("oversize") and not m.HasField("size"),
              "McastMsg of a small message has oversize/size set")
        check(m.HasField("payload"), "McastMsg without payload")
    eq([f.deliver.seq for f in delivers(s, 2, sid=1)], seqs, "Deliver.seq of the TCP subscriber")


@mtest("s18_datagram_trailer")
def _(ctx, b, c, rx):
    """A client on loopback gets each group's 32-byte key in WELCOME; every
    datagram ends with dseq (0x19, 8 bytes little-endian: sender << 48 |
    count) and tag (0x22 0x10, 16 bytes) at fixed places, the tag being keyed
    BLAKE2b-128 of every byte before it; one sender's counts grow by one."""
    keys = [g.key for g in c.welcome.groups]
    eq([len(k) for k in keys], [32, 32], "McastGroup.key lengths")
    check(keys[0] != keys[1], "two groups share one key")
    t = "mc.t.%s" % ctx.prefix
    c.send(*[wire.publish(t, b"x" * 300, req=i + 1) for i in range(4)])
    for _ in range(4):
        c.expect("ack")
    raws, counts = [], {}
    deadline = wire.now() + 3.0
    while not any(m.topic == t and m.seq == 4 for r in raws for m in pb.Datagram.FromString(r).msgs):
        raw = rx[2].recv(deadline - wire.now())
        if pb.Datagram.FromString(raw).epoch == c.welcome.epoch:
            raws.append(raw)
    for raw in raws:
        eq((raw[-27], raw[-18], raw[-17]), (0x19, 0x22, 0x10), "trailer field keys")
        tag = hashlib.blake2b(raw[:-18], digest_size=16, key=keys[1]).digest()
        eq(raw[-16:], tag, "Datagram.tag (keyed BLAKE2b-128 of the bytes before it)")
        d = pb.Datagram.FromString(raw)
        eq(d.dseq, struct.unpack("<Q", raw[-26:-18])[0], "Datagram.dseq")
        sender, count = d.dseq >> 48, d.dseq & ((1 << 48) - 1)
        check(count == counts.get(sender, count - 1) + 1, "sender %d: count %d after %s",
              sender, count, counts.get(sender))
        counts[sender] = count


@mtest("s18_first_matching_group")
def _(ctx, b, c, rx):
    """A topic goes to the first group whose filter matches: mc.a.x only to
    mc.a.> (listed first), mc.b to mc.>; a datagram holds one group's messages."""
    ta, tb = "mc.a.%s" % ctx.prefix, "mc.b%s" % ctx.prefix
    c.send(*[wire.publish(ta if i % 2 else tb, b"x", req=i + 1) for i in range(10)])
    for i in range(10):
        c.expect("ack")
    g1 = datagrams(rx[1], c.welcome.epoch, seen(ta, range(1, 6)))
    g2 = datagrams(rx[2], c.welcome.epoch, seen(tb, range(1, 6)))
    eq(sorted({m.topic for m in msgs_of(g1)}), [ta], "topics on group mc.a.>")
    eq(sorted({m.topic for m in msgs_of(g2)}), [tb], "topics on group mc.>")


@mtest("s18_small_messages_packed")
def _(ctx, b, c, rx):
    """Small messages are packed several to a datagram, in publish order, each
    datagram at most max_datagram bytes."""
    t = "mc.p.%s" % ctx.prefix
    n = 40
    c.send(*[wire.publish(t, b"%02d" % i, req=i + 1) for i in range(n)])
    for _ in range(n):
        c.expect("ack")
    got = datagrams(rx[2], c.welcome.epoch, seen(t, range(1, n + 1)))
    ms = msgs_of(got, t)
    eq([m.seq for m in ms], list(range(1, n + 1)), "seqs in order, each once")
    eq([m.payload for m in ms], [b"%02d" % i for i in range(n)], "payloads")
    check(max(len(d.msgs) for d in got) > 1, "%d messages came in %d datagrams: none packed",
          n, len(got))


@mtest("s18_oversize_marker_and_repair")
def _(ctx, b, c, rx):
    """A message too large for max_datagram comes as a marker (topic, seq,
    oversize = true, size, no payload), counted in fanout_mcast_oversize_total;
    REPAIR over TCP on a multicast subscription returns it (DELIVER replay=true,
    Frame.sid = the subscription's sid), then the ACK."""
    before = b.metric("fanout_mcast_oversize_total")
    check(before is not None, "fanout_mcast_oversize_total missing")
    t = "mc.o.%s" % ctx.prefix
    sub(c, 5, "mc.o.>", delivery=S.DELIVERY_MULTICAST)
    big = bytes(random.getrandbits(8) for _ in range(1000))
    seqs, other = publish_acked(c, t, [big])
    eq([describe(f) for f in other], [], "TCP frames for a multicast subscription")
    got = datagrams(rx[2], c.welcome.epoch, seen(t, seqs))
    m = msgs_of(got, t)[0]
    check(m.oversize, "McastMsg of a 1000-byte payload (max_datagram 512) is not an oversize marker")
    check(m.HasField("size") and m.size == 1000, "oversize marker size %s, want 1000",
          m.size if m.HasField("size") else None)
    check(not m.HasField("payload"), "oversize marker carries a payload")
    b.wait_metric("fanout_mcast_oversize_total", lambda v: v > before)
    c.send(wire.repair(5, t, seqs[0], seqs[0], req=9))
    d = delivers(c, 1, sid=5)[0]
    check(d.deliver.replay, "repaired DELIVER without replay=true")
    eq(d.deliver.payload, big, "repaired payload")
    eq(c.expect("ack").ack.ref, 9, "ACK ref")


@mtest("s18_repair_evicted_and_tail_probe")
def _(ctx, b, c, rx):
    """REPAIR answers from retention (4 messages): GAP_EVICTED for the run no
    longer held, DELIVER replay=true for the rest, ACK; a tail probe past the
    last sequence number gets only the ACK."""
    t = "mc.e.%s" % ctx.prefix
    sub(c, 2, "mc.e.*", delivery=S.DELIVERY_MULTICAST)
    seqs, _ = publish_acked(c, t, [b"e%d" % i for i in range(8)])
    eq(seqs, list(range(1, 9)), "seqs")
    datagrams(rx[2], c.welcome.epoch, seen(t, seqs))
    c.send(wire.repair(2, t, 1, 8, req=3))
    f = c.expect("gap")
    eq((f.sid, f.gap.topic, f.gap.first, f.gap.last, S.GapReason.Name(f.gap.reason)),
       (2, t, 1, 4, "GAP_EVICTED"), "GAP")
    d = delivers(c, 4, sid=2)
    eq([(x.deliver.seq, x.deliver.replay) for x in d], [(5, True), (6, True), (7, True), (8, True)],
       "repaired")
    eq(c.expect("ack").ack.ref, 3, "ACK ref")
    c.send(wire.repair(2, t, 9, 9 + 4095, req=4))
    eq(c.expect("ack").ack.ref, 4, "only the ACK answers a tail probe")


@mtest("s18_multicast_subscription_tcp_only_for_uncarried")
def _(ctx, b, c, rx):
    """A DELIVERY_MULTICAST subscription gets no TCP DELIVER for topics a group
    carries, and TCP DELIVERs for matching topics no group carries."""
    carried, plain = "mc.w.%s" % ctx.prefix, "%s.plain" % ctx.prefix
    s = ctx.client()
    sub(s, 1, ">", delivery=S.DELIVERY_MULTICAST)
    sub(s, 2, carried)             # TCP witness for the carried topic
    sub(s, 3, plain)               # TCP witness for the plain topic
    publish_acked(c, carried, [b"c"])
    publish_acked(c, plain, [b"p"], req0=2)
    got = s.collect_until(lambda f: kind(f) == "deliver" and f.sid == 2, what="witness")
    got += s.collect_until(lambda f: kind(f) == "deliver" and f.sid == 3, what="witness") \
        if not any(kind(f) == "deliver" and f.sid == 3 for f in got) else []
    got += s.barrier()
    mine = sorted(f.deliver.topic for f in got if kind(f) == "deliver" and f.sid == 1)
    eq(mine, [plain], "TCP DELIVERs of the multicast subscription")
    datagrams(rx[2], c.welcome.epoch, seen(carried, [1]))


@mtest("s18_counted")
def _(ctx, b, c, rx):
    """fanout_mcast_messages_total and fanout_mcast_datagrams_total count."""
    m0 = b.metric("fanout_mcast_messages_total")
    d0 = b.metric("fanout_mcast_datagrams_total")
    check(m0 is not None and d0 is not None, "mcast counters missing")
    check(b.metric("fanout_mcast_send_errors_total") is not None,
          "fanout_mcast_send_errors_total missing")
    t = "mc.c.%s" % ctx.prefix
    publish_acked(c, t, [b"1", b"2", b"3"])
    datagrams(rx[2], c.welcome.epoch, seen(t, [1, 2, 3]))
    b.wait_metric("fanout_mcast_messages_total", lambda v: v >= m0 + 3)
    b.wait_metric("fanout_mcast_datagrams_total", lambda v: v >= d0 + 1)
