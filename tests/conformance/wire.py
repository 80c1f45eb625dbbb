"""wire.py -- a fanout client written from docs/PROTOCOL.md alone.

Framing (§1): a 4-byte big-endian length N, then N bytes of a packed
fanout.Frame. Everything here blocks with explicit deadlines: a receive
that does not complete in time raises Timeout, a peer that closes raises
Closed (carrying whatever came before). Nothing sleeps.
"""
import select
import socket
import struct
import time

import fanout_pb2 as pb  # generated at test time by tests/conformance/run

DEFAULT_TIMEOUT = 3.0

# Every ERROR any connection received during the run: (has code, code, text).
ERRORS_SEEN = []


class Timeout(AssertionError):
    pass


class Closed(AssertionError):
    pass


def now():
    return time.monotonic()


# ------------------------------------------------------------ raw protobuf
# A tiny hand encoder, for frames Google's runtime will not produce (wrong
# wire types, truncated fields, raw bytes in strings, unknown fields).

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wt):
    return varint(field << 3 | wt)


def f_varint(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return key(field, 2) + varint(len(b)) + b


def read_varint(b, i):
    v, shift = 0, 0
    while True:
        if i >= len(b):
            raise ValueError("varint runs past the end")
        x = b[i]
        i += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return v, i


def fields(b):
    """Walk a protobuf message: [(field, wire type, start, end, value)], where
    start..end are the bytes of the whole field (key included) and value is
    an int (varint) or the bytes of a length-delimited field."""
    out, i = [], 0
    while i < len(b):
        start = i
        k, i = read_varint(b, i)
        fld, wt = k >> 3, k & 7
        if wt == 0:
            v, i = read_varint(b, i)
        elif wt == 2:
            n, i = read_varint(b, i)
            if i + n > len(b):
                raise ValueError("field %d runs past the end" % fld)
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((fld, wt, start, i, v))
    return out


def frame_bytes(body):
    """Prefix a frame body with its 4-byte big-endian length."""
    return struct.pack(">I", len(body)) + body


def enc(frame):
    return frame_bytes(frame.SerializeToString())


# ------------------------------------------------------------ frame builders

def F(**kw):
    """F(req=1, sid=2) -> an empty Frame with envelope fields set."""
    f = pb.Frame()
    for k, v in kw.items():
        if v is not None:
            setattr(f, k, v)
    return f


def hello(version=1, client_name="conformance", user=None, password=None, req=None):
    f = F(req=req)
    f.hello.SetInParent()
    if version is not None:
        f.hello.version = version
    if client_name is not None:
        f.hello.client_name = client_name
    if user is not None:
        f.hello.user = user
    if password is not None:
        f.hello.password = password
    return f


def publish(topic, payload=b"", req=None):
    f = F(req=req)
    f.publish.SetInParent()
    if topic is not None:
        f.publish.topic = topic
    if payload is not None:
        f.publish.payload = payload
    return f


def subscribe(sid, filt, req=None, queue=None, delivery=None, start=None,
              start_seq=None, slow=None, positions=()):
    f = F(req=req)
    s = f.subscribe
    s.SetInParent()
    if sid is not None:
        s.sid = sid
    if filt is not None:
        s.filter = filt
    if queue is not None:
        s.queue = queue
    if delivery is not None:
        s.delivery = delivery
    if start is not None:
        s.start = start
    if start_seq is not None:
        s.start_seq = start_seq
    if slow is not None:
        s.slow = slow
    for p in positions:
        pos = s.positions.add()
        topic, seq = p
        if topic is not None:
            pos.topic = topic
        if seq is not None:
            pos.seq = seq
    return f


def unsubscribe(sid, req=None):
    f = F(req=req)
    f.unsubscribe.SetInParent()
    if sid is not None:
        f.unsubscribe.sid = sid
    return f


def repair(sid, topic, first, last, req=None):
    f = F(req=req)
    f.repair.SetInParent()
    for k, v in (("sid", sid), ("topic", topic), ("first", first), ("last", last)):
        if v is not None:
            setattr(f.repair, k, v)
    return f


def ping(nonce=None, req=None):
    f = F(req=req)
    f.ping.SetInParent()
    if nonce is not None:
        f.ping.nonce = nonce
    return f


def pong(nonce=None):
    f = F()
    f.pong.SetInParent()
    if nonce is not None:
        f.pong.nonce = nonce
    return f


def kind(f):
    return f.WhichOneof("body")


def describe(f):
    if f is None:
        return "None"
    k = kind(f)
    body = getattr(f, k) if k else None
    env = []
    if f.HasField("req"):
        env.append("req=%d" % f.req)
    if f.HasField("sid"):
        env.append("sid=%d" % f.sid)
    txt = str(body).replace("\n", " ").strip() if body is not None else ""
    return "%s{%s}%s" % ((k or "NOBODY").upper(), txt[:200], (" " + " ".join(env)) if env else "")


# ------------------------------------------------------------ the client

class Conn:
    """One TCP connection to the broker, with a frame decoder (§1)."""

    def __init__(self, port, host="127.0.0.1", rcvbuf=None, connect_timeout=3.0,
                 max_frame=64 * 1024 * 1024 + 64):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(connect_timeout)
        self.sock.connect((host, port))
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.max_frame = max_frame
        self.welcome = None
        self.nonce = 1000
        self.raw_frames = []   # raw bodies of the frames received, in order
        self.keep_raw = False
        self.auto_pong = True

    # -- sending
    def send_raw(self, data):
        view = memoryview(data)
        deadline = now() + DEFAULT_TIMEOUT
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except BlockingIOError:
                left = deadline - now()
                if left <= 0:
                    raise Timeout("send: peer does not read")
                select.select([], [self.sock], [], left)
            except (BrokenPipeError, ConnectionResetError) as e:
                raise Closed("send: %s" % e)

    def send(self, *frames):
        self.send_raw(b"".join(enc(f) for f in frames))

    # -- receiving
    def _fill(self, deadline):
        """Read what is there (waiting until deadline). False on timeout."""
        if self.eof:
            return False
        left = deadline - now()
        if left < 0:
            left = 0
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return True
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.buf += data
        return True

    def _cut(self):
        if len(self.buf) < 4:
            return None
        n = struct.unpack(">I", self.buf[:4])[0]
        if n == 0 or n > self.max_frame:
            raise AssertionError("broker sent a frame of length %d" % n)
        if len(self.buf) < 4 + n:
            return None
        body = bytes(self.buf[4:4 + n])
        del self.buf[:4 + n]
        return body

    def recv_body(self, timeout=DEFAULT_TIMEOUT):
        """The next raw frame body; Timeout or Closed otherwise."""
        deadline = now() + timeout
        while True:
            body = self._cut()
            if body is not None:
                if self.keep_raw:
                    self.raw_frames.append(body)
                return body
            if self.eof:
                if self.buf:
                    raise Closed("EOF inside a frame (%d bytes left)" % len(self.buf))
                raise Closed("EOF")
            if not self._fill(deadline) and now() >= deadline:
                raise Timeout("no frame within %.1fs" % timeout)

    def recv(self, timeout=DEFAULT_TIMEOUT):
        """The next frame. A PING from the broker is answered with a PONG and
        skipped while auto_pong is set (as a real client does, §13)."""
        deadline = now() + timeout
        while True:
            body = self.recv_body(max(0.0, deadline - now()))
            f = pb.Frame()
            f.ParseFromString(body)
            k = f.WhichOneof("body")
            if k == "error":
                e = f.error
                ERRORS_SEEN.append((e.HasField("code"), e.code,
                                    e.text if e.HasField("text") else None))
            if k == "ping" and self.auto_pong:
                self.send(pong(f.ping.nonce) if f.ping.HasField("nonce") else pong())
                continue
            return f

    def expect(self, want, timeout=DEFAULT_TIMEOUT, skip=()):
        """The next frame, which must be of kind `want` (frames whose kind is
        in `skip` are passed over). Returns it."""
        deadline = now() + timeout
        while True:
            try:
                f = self.recv(max(0.0, deadline - now()))
            except Timeout:
                raise Timeout("waiting for %s: nothing within %.1fs" % (want.upper(), timeout))
            except Closed as e:
                raise Closed("waiting for %s: connection closed (%s)" % (want.upper(), e))
            if kind(f) == want:
                return f
            if kind(f) in skip:
                continue
            raise AssertionError("expected %s, got %s" % (want.upper(), describe(f)))

    def expect_error(self, code, timeout=DEFAULT_TIMEOUT, skip=()):
        f = self.expect("error", timeout, skip)
        e = f.error
        got = pb.ErrorCode.Name(e.code) if e.HasField("code") else "(no code)"
        want = pb.ErrorCode.Name(code)
        if got != want:
            raise AssertionError("expected ERROR %s, got ERROR %s (%r)" % (want, got, e.text))
        if not e.HasField("text") or not e.text:
            raise AssertionError("ERROR %s has no text (§4.11: text always)" % want)
        return e

    def collect_until(self, pred, timeout=DEFAULT_TIMEOUT, what="condition"):
        """Receive frames until pred(frame) is true; return all of them
        (the matching one last)."""
        got = []
        deadline = now() + timeout
        while True:
            try:
                f = self.recv(max(0.0, deadline - now()))
            except Timeout:
                raise Timeout("waiting for %s: nothing more within %.1fs after %s" %
                              (what, timeout, [describe(x) for x in got[-5:]]))
            got.append(f)
            if pred(f):
                return got

    def wait_eof(self, timeout=DEFAULT_TIMEOUT):
        """Wait until the peer closes; returns the frames that came first."""
        got = []
        deadline = now() + timeout
        while True:
            try:
                got.append(self.recv(max(0.0, deadline - now())))
            except Closed:
                return got
            except Timeout:
                raise Timeout("connection still open after %.1fs (frames: %s)" %
                              (timeout, [describe(x) for x in got[-5:]]))

    def expect_closed(self, timeout=DEFAULT_TIMEOUT):
        """Nothing but EOF must come now."""
        rest = self.wait_eof(timeout)
        if rest:
            raise AssertionError("expected EOF, got %s" % [describe(x) for x in rest[:5]])

    def barrier(self, timeout=DEFAULT_TIMEOUT):
        """PING with a fresh nonce and return every frame received before its
        PONG. Proves the connection is open and that the broker has handled
        everything sent before."""
        self.nonce += 1
        n = self.nonce
        self.send(ping(n))
        got = self.collect_until(lambda f: kind(f) == "pong" and f.pong.nonce == n,
                                 timeout, "PONG %d" % n)
        return got[:-1]

    def assert_open(self, timeout=DEFAULT_TIMEOUT):
        rest = self.barrier(timeout)
        if rest:
            raise AssertionError("unexpected frames before PONG: %s" %
                                 [describe(x) for x in rest[:5]])

    def hello(self, version=1, **kw):
        self.send(hello(version, **kw))
        f = self.expect("welcome")
        self.welcome = f.welcome
        return f.welcome

    def request(self, frame, timeout=DEFAULT_TIMEOUT):
        """Send a frame carrying req and return its ACK, skipping nothing."""
        self.send(frame)
        f = self.expect("ack", timeout)
        if f.ack.ref != frame.req:
            raise AssertionError("ACK ref %d, expected %d" % (f.ack.ref, frame.req))
        return f.ack

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
