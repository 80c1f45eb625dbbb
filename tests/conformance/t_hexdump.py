"""§17 Hex dumps of real frames: the bytes in docs/PROTOCOL.md, read from the
document itself, against Google's protobuf runtime and the broker."""
import datetime
import os
import re

import wire
from harness import check, delivers, eq, pb, publish_acked, sub, test

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "PROTOCOL.md")


def dumps():
    """{name: (bytes, text of the block)} for every <!-- hexdump: NAME --> block."""
    text = open(DOC, encoding="utf-8").read()
    out = {}
    for m in re.finditer(r"<!-- hexdump: (\w+) -->\s*```text\n(.*?)```", text, re.S):
        data = bytearray()
        for line in m.group(2).splitlines():
            for tok in line.split():
                if re.fullmatch(r"[0-9a-f]{2}", tok):
                    data.append(int(tok, 16))
                else:
                    break
        out[m.group(1)] = (bytes(data), m.group(2))
    return out


def dump(name):
    d = dumps()
    check(name in d, "docs/PROTOCOL.md has no hexdump %r", name)
    return d[name]


def parse(b):
    n = int.from_bytes(b[:4], "big")
    eq(n, len(b) - 4, "the dump's frame length N vs its body bytes")
    f = pb.Frame()
    f.ParseFromString(b[4:])
    return f


def stated_total(name):
    """The 'NN bytes' the text before a dump states for it."""
    text = open(DOC, encoding="utf-8").read()
    i = text.index("<!-- hexdump: %s -->" % name)
    m = re.findall(r"(\d+) bytes", text[max(0, i - 700):i])
    return [int(x) for x in m]


@test("s17_hello_dump", brokers=())
def _(ctx):
    """17.1: Frame{hello{version 1, client_name "demo"}}, 14 bytes; Google's
    encoding is the same bytes and decodes the dump to the same fields."""
    b, _ = dump("hello")
    want = pb.Frame()
    want.hello.version = 1
    want.hello.client_name = "demo"
    eq(parse(b), want, "decoded dump")
    eq(wire.enc(want).hex(" "), b.hex(" "), "Google's encoding vs the dump")
    eq(len(b), 14, "length")
    check(14 in stated_total("hello"), "the text should say 14 bytes")


@test("s17_publish_dump", brokers=())
def _(ctx):
    """17.2: Frame{publish{topic "orders.eu", payload "hello"}, req 7}, 26 bytes."""
    b, _ = dump("publish")
    want = pb.Frame(req=7)
    want.publish.topic = "orders.eu"
    want.publish.payload = b"hello"
    eq(parse(b), want, "decoded dump")
    eq(wire.enc(want).hex(" "), b.hex(" "), "Google's encoding vs the dump")
    eq(len(b), 26, "length")
    check(26 in stated_total("publish"), "the text should say 26 bytes")


def deliver_bytes(sid, topic, seq, time_ns, payload):
    """A DELIVER in the doc's layout: sid, then the shared body {topic, seq,
    time_ns, payload}."""
    inner = wire.f_bytes(1, topic) + wire.f_varint(2, seq) + wire.f_varint(4, time_ns) + \
        wire.f_bytes(3, payload)
    return wire.frame_bytes(wire.f_varint(15, sid) + wire.f_bytes(6, inner))


DOC_TIME = 1700000000123456789


@test("s17_deliver_dump", brokers=())
def _(ctx):
    """17.3: sid 3, then the shared body of seq 42 of "orders.eu": decodes to the
    stated fields with Google's runtime (which orders fields by number: same
    length, same message); 6-byte prefix + 32-byte shared body; the time
    annotation is right."""
    b, text = dump("deliver")
    want = pb.Frame(sid=3)
    d = want.deliver
    d.topic, d.seq, d.time_ns, d.payload = "orders.eu", 42, DOC_TIME, b"hello"
    got = parse(b)
    eq(got, want, "decoded dump")
    eq(len(want.SerializeToString()), len(b) - 4, "Google's encoding length vs the dump")
    eq(b.hex(" "), deliver_bytes(3, "orders.eu", 42, DOC_TIME, b"hello").hex(" "),
       "the dump vs the doc's layout (sid first, payload last)")
    fs = wire.fields(b[4:])
    eq([f[0] for f in fs], [15, 6], "Frame fields in the dump")
    eq((4 + fs[0][3], len(b) - 4 - fs[1][2]), (6, 32), "prefix and shared body sizes (§17.3 text)")
    eq(len(wire.varint(DOC_TIME)), 9, "time_ns varint bytes")
    when = datetime.datetime.fromtimestamp(DOC_TIME // 10**9, datetime.timezone.utc)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S") + ".%09d UTC" % (DOC_TIME % 10**9)
    check(stamp in text, "annotation should read %s", stamp)


@test("s17_dump_frames_to_broker")
def _(ctx):
    """The doc's HELLO and PUBLISH bytes, sent as they are: WELCOME, then
    ACK {ref 7, seq}."""
    c = ctx.connect()
    c.send_raw(dump("hello")[0] + dump("publish")[0])
    c.expect("welcome")
    a = c.expect("ack").ack
    eq(a.ref, 7, "ACK ref")
    check(a.HasField("seq"), "ACK without seq")


@test("s17_broker_deliver_matches_dump")
def _(ctx):
    """What the broker sends for seq 42 of "orders.eu" ("hello") to sid 3 is the
    dump byte for byte, except time_ns."""
    c = ctx.client()
    c.keep_raw = True
    sub(c, 3, "orders.eu")
    p = ctx.client(name="publisher")
    k = publish_acked(p, "orders.eu", [b"filler"])[0][0]
    check(k <= 41, "orders.eu is already at seq %d", k)
    publish_acked(p, "orders.eu", [b"filler"] * (41 - k), req0=2)
    eq(publish_acked(p, "orders.eu", [b"hello"], req0=100)[0], [42], "seq")
    d = delivers(c, 43 - k, sid=3)[-1]
    raw = wire.frame_bytes(c.raw_frames[-1])
    eq(raw.hex(" "), deliver_bytes(3, "orders.eu", 42, d.deliver.time_ns, b"hello").hex(" "),
       "DELIVER bytes (the dump with this message's time_ns)")
    doc = dump("deliver")[0]
    eq(len(raw), len(doc), "length vs the dump")
