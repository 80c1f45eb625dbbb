"""harness.py -- the test registry, broker configurations and helpers the
section modules share."""
import wire
from wire import pb, kind, describe  # noqa: F401

# ------------------------------------------------------------ registry

TESTS = []          # (name, fn, broker keys)

# Broker configurations: extra fanoutd arguments (or a function of the
# Broker returning them, called on every start attempt).
BROKERS = {
    "default": [],
    # §13/§3: short keepalive and hello timeouts
    # (and §14: a topic limit, which no keepalive test reaches)
    "keepalive": ["--ping-interval", "200ms", "--idle-timeout", "1s", "--hello-timeout", "300ms",
                  "--max-topics", "3"],
    # §11: a tiny output limit
    "slow": ["--max-output", "4KiB"],
    # §8: small retention rings; §15: a small max-frame and max-subs
    "retention": ["--retention-msgs", "5", "--retention-bytes", "4KiB", "--max-frame", "2KiB",
                  "--max-subs", "3"],
    "maxconns": ["--max-conns", "2"],
    # §12: all message memory is output queue (nothing retained)
    "memory": ["--max-memory", "1MiB", "--retention-msgs", "0", "--max-output", "64MiB"],
    "auth": ["--user", "alice", "--password", "s3cret"],
    # §3 step 6: SIGTERM while a reader is behind
    "shutdown": ["--drain-timeout", "3s", "--max-output", "64MiB"],
    "shutdown2": ["--drain-timeout", "3s", "--max-output", "64MiB"],
}


class Skip(Exception):
    pass


def test(name, brokers=("default",)):
    if isinstance(brokers, str):
        brokers = (brokers,)

    def deco(fn):
        TESTS.append((name, fn, tuple(brokers)))
        return fn
    return deco


class Ctx:
    def __init__(self, suite, name):
        self.suite = suite
        self.name = name
        self.conns = []
        # a topic prefix unique to this test, so tests on one broker never
        # see each other's messages
        self.prefix = "t%d" % (len(suite.done) + 1)

    def broker(self, key="default"):
        return self.suite.get_broker(key)

    @property
    def b(self):
        return self.broker(self.suite.current_brokers[0])

    def topic(self, suffix=""):
        return self.prefix + ("." + suffix if suffix else "")

    def client(self, key=None, name=None, **kw):
        c = self.broker(key or self.suite.current_brokers[0]).client(name or self.name, **kw)
        self.conns.append(c)
        return c

    def connect(self, key=None, **kw):
        c = self.broker(key or self.suite.current_brokers[0]).connect(**kw)
        self.conns.append(c)
        return c

    def close(self):
        for c in self.conns:
            c.close()



# ------------------------------------------------------------ helpers

E = pb.ErrorCode
ERR = {name: E.Value(name) for name in E.keys()}


def check(cond, msg, *args):
    if not cond:
        raise AssertionError(msg % args if args else msg)


def eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def closes(c, code, ref=None, sid=None, timeout=3.0):
    """The next frame is ERROR `code` and the broker then closes (§14)."""
    e = c.expect_error(code, timeout)
    check_error_fields(e, ref, sid)
    try:
        rest = c.wait_eof(timeout)
    except wire.Timeout:
        raise AssertionError("ERROR %s: the connection must close (§14), it stayed open" %
                             E.Name(code))
    check(not rest, "after ERROR %s only EOF may come, got %s", E.Name(code),
          [describe(x) for x in rest[:5]])
    return e


def stays_open(c, code, ref=None, sid=None, timeout=3.0, skip=()):
    """The next frame is ERROR `code` and the connection stays open (§14):
    a PING still gets its PONG."""
    e = c.expect_error(code, timeout, skip=skip)
    check_error_fields(e, ref, sid)
    try:
        c.assert_open(timeout)
    except wire.Closed:
        raise AssertionError("ERROR %s: the connection must stay open (§14), it was closed" %
                             E.Name(code))
    return e


def check_error_fields(e, ref, sid):
    """ref/sid: None = must be absent, an int = must be that, ANY = don't care."""
    if ref is not ANY:
        if ref is None:
            check(not e.HasField("ref"), "ERROR %s carries ref=%d for a frame without req (§4.11)",
                  E.Name(e.code), e.ref)
        else:
            check(e.HasField("ref"), "ERROR %s has no ref, the frame had req=%d (§5)",
                  E.Name(e.code), ref)
            eq(e.ref, ref, "Error.ref")
    if sid is not ANY and sid is not None:
        check(e.HasField("sid"), "ERROR %s has no sid, want sid=%d (§4.11)", E.Name(e.code), sid)
        eq(e.sid, sid, "Error.sid")


class _Any:
    def __repr__(self):
        return "ANY"


ANY = _Any()


def delivers(c, n, timeout=3.0, sid=None, what="DELIVER"):
    """The next n frames, which must all be DELIVER (for sid, if given)."""
    out = []
    deadline = wire.now() + timeout
    while len(out) < n:
        try:
            f = c.recv(max(0.0, deadline - wire.now()))
        except wire.Timeout:
            raise wire.Timeout("%s: %d of %d received within %.1fs" % (what, len(out), n, timeout))
        check(kind(f) == "deliver", "%s %d/%d: got %s", what, len(out) + 1, n, describe(f))
        check(f.HasField("sid"), "DELIVER without Frame.sid (§2: always on DELIVER)")
        if sid is not None:
            eq(f.sid, sid, "DELIVER Frame.sid")
        out.append(f)
    return out


def publish_acked(c, topic, payloads, req0=1):
    """Publish each payload with req, pipelined; wait for every ACK (frames
    of other kinds, e.g. our own DELIVERs, are returned separately).
    Returns (list of seqs, other frames)."""
    frames = [wire.publish(topic, p, req=req0 + i) for i, p in enumerate(payloads)]
    c.send(*frames)
    seqs, other = [], []
    want = req0
    deadline = wire.now() + 5.0
    while want < req0 + len(payloads):
        f = c.recv(max(0.0, deadline - wire.now()))
        if kind(f) == "ack":
            eq(f.ack.ref, want, "ACK ref (ACKs come in request order, §5)")
            check(f.ack.HasField("seq"), "ACK of a PUBLISH without seq (§4.9)")
            seqs.append(f.ack.seq)
            want += 1
        elif kind(f) == "error":
            raise AssertionError("PUBLISH %r refused: %s" % (topic, describe(f)))
        else:
            other.append(f)
    return seqs, other


def pub(ctx, topic, payload=b"x", n=1, conn=None):
    """Publish n messages on a (new) connection; returns the seqs."""
    c = conn or ctx.client(name="publisher")
    seqs, _ = publish_acked(c, topic, [payload] * n if isinstance(payload, bytes) else payload)
    return seqs


def sub(c, sid, filt, req=None, **kw):
    """SUBSCRIBE and wait for its ACK (req defaults to 100000 + sid)."""
    req = req or 100000 + sid
    c.send(wire.subscribe(sid, filt, req=req, **kw))
    f = c.expect("ack")
    eq(f.ack.ref, req, "ACK ref of SUBSCRIBE")
    check(not f.ack.HasField("seq"), "ACK of SUBSCRIBE carries seq (§4.9: only for PUBLISH)")
    return f.ack
