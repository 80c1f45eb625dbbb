"""broker.py -- start, watch and stop real fanoutd processes.

Ports are picked at random in 20000..32000 (below the ephemeral range, so
they cannot collide with the kernel's own choices) and tried: a broker that
cannot bind exits, and is started again on other ports. A broker is ready
when GET /healthz answers 200 and the listening sockets on both ports are
its own (checked in /proc, so another process on a port we picked can never
be mistaken for ours).
"""
import http.client
import os
import random
import re
import signal
import subprocess
import time

import wire

PORT_LO, PORT_HI = 20000, 32000


def _die_with_parent():
    """In the child before exec: SIGKILL it if the suite itself dies (a
    safety net; the suite stops its brokers itself)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)   # PR_SET_PDEATHSIG, SIGKILL
    except Exception:
        pass


def now():
    return time.monotonic()


def random_port(taken=()):
    while True:
        p = random.randint(PORT_LO, PORT_HI)
        if p not in taken:
            return p


def _listen_inodes(port):
    """Inodes of the TCP sockets listening on 127.0.0.1:port (or any addr)."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    local, state, inode = p[1], p[3], p[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        out.add(inode)
        except OSError:
            pass
    return out


def _fd_inodes(pid):
    out = set()
    d = "/proc/%d/fd" % pid
    try:
        for fd in os.listdir(d):
            try:
                t = os.readlink(os.path.join(d, fd))
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]", t)
            if m:
                out.add(m.group(1))
    except OSError:
        pass
    return out


def owns_port(pid, port):
    return bool(_listen_inodes(port) & _fd_inodes(pid))


def http_get(port, path, timeout=2.0):
    """(status, headers dict lower-cased, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def parse_metrics(text):
    """{'name{labels}': value} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


class Broker:
    def __init__(self, build, key, args=(), logdir=None):
        self.build = build
        self.key = key
        self.args = args if callable(args) else list(args)
        self.extra = {}
        self.logdir = logdir or os.path.join(build, "conformance", "logs")
        self.proc = None
        self.port = self.http_port = None
        self.log_path = os.path.join(self.logdir, "fanoutd-%s.log" % key)
        self.stopped = False
        self.expect_exit = False    # set by a test that stops the broker itself
        self.start_wall_ns = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, deadline_s=10.0):
        os.makedirs(self.logdir, exist_ok=True)
        binary = os.path.join(self.build, "fanoutd")
        if not os.access(binary, os.X_OK):
            raise RuntimeError("%s not found: build first (make)" % binary)
        deadline = now() + deadline_s
        attempt = 0
        while now() < deadline:
            attempt += 1
            port = random_port()
            hport = random_port({port})
            args = [binary, "--listen", "127.0.0.1:%d" % port, "--http", "127.0.0.1:%d" % hport,
                    "--threads", "2"] + list(self.args(self) if callable(self.args) else self.args)
            log = open(self.log_path, "ab")
            log.write(("=== attempt %d: %s\n" % (attempt, " ".join(args))).encode())
            log.flush()
            env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
            self.start_wall_ns = time.time_ns()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=_die_with_parent)
            log.close()
            self.port, self.http_port = port, hport
            while now() < deadline:
                if self.proc.poll() is not None:
                    break   # could not bind (or bad options): look at the log, retry
                if self.ready():
                    return self
                time.sleep(0.01)   # polling a condition (healthz) with a deadline
            if self.proc.poll() is None:
                continue
            with open(self.log_path, "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            if "cannot listen" not in tail:
                raise RuntimeError("fanoutd %s exited %s at start:\n%s" % (self.key, self.proc.returncode, tail))
        self.kill()
        raise RuntimeError("fanoutd %s: not ready within %.0fs (log %s)" % (self.key, deadline_s, self.log_path))

    def ready(self):
        try:
            st, _, _ = http_get(self.http_port, "/healthz", timeout=0.5)
        except OSError:
            return False
        return st == 200 and owns_port(self.pid, self.port) and owns_port(self.pid, self.http_port)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit status."""
        if self.proc is None or self.stopped:
            return self.proc.returncode if self.proc else None
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(timeout) is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = True

    # -- clients
    def connect(self, **kw):
        return wire.Conn(self.port, **kw)

    def client(self, name="conformance", **kw):
        """A connection that has done HELLO/WELCOME."""
        c = wire.Conn(self.port, **kw)
        c.hello(client_name=name)
        return c

    # -- http
    def get(self, path):
        return http_get(self.http_port, path)

    def metrics(self):
        st, _, body = self.get("/metrics")
        if st != 200:
            raise AssertionError("/metrics answered %d" % st)
        return parse_metrics(body.decode())

    def metric(self, name):
        """Sum of every series of `name` (any labels); None when absent."""
        m = self.metrics()
        vals = [v for k, v in m.items() if k == name or k.startswith(name + "{")]
        return sum(vals) if vals else None

    def wait_metric(self, name, pred, timeout=3.0, what=None):
        deadline = now() + timeout
        v = None
        while True:
            v = self.metric(name)
            if v is not None and pred(v):
                return v
            if now() >= deadline:
                raise wire.Timeout("metric %s: %s not reached within %.1fs (value %s)" %
                                   (name, what or "condition", timeout, v))
            time.sleep(0.01)   # polling a metric with a deadline
