#!/usr/bin/env python3
"""cluster_copies.py -- what crosses the links of a three-broker cluster
per message, fanout beside nats-server routes (docs/BENCHMARKS.md).

Counting, not throughput: three brokers on one 2-core box measure nothing
about speed. For each case (subscribers on 1, 2 or 3 brokers) a publisher
on one broker sends N messages of SIZE bytes to one topic; the links'
counters before and after give copies and bytes per message:
  fanout: fanout_cluster_link_messages_out_total + fanout_cluster_forwarded_total
          and fanout_cluster_link_bytes_out_total, summed over the brokers
          (the publisher is on a broker that is not the topic's home, the
          case that costs the forward);
  nats:   /routez out_msgs and out_bytes, summed over the servers.

Usage: FO_BUILD=build tests/bench/cluster_copies.py [N] [SIZE]
Needs build/fanoutd, build/fanout and nats-server (Debian's package);
without nats-server only fanout's rows are printed.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = os.environ.get("FO_BUILD", "build")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 100


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.read().decode()


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=20)


def wait(cond, secs=20, what="condition"):
    end = time.time() + secs
    while time.time() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("timed out waiting for " + what)


# ------------------------------------------------------------ fanout

def metrics(port):
    out = {}
    for line in http(port, "/metrics").splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def fanout_counts(brokers):
    msgs = byts = 0
    for b in brokers:
        m = metrics(b["http"])
        for k, v in m.items():
            if k.startswith("fanout_cluster_link_messages_out_total{") or k == "fanout_cluster_forwarded_total":
                msgs += v
            elif k.startswith("fanout_cluster_link_bytes_out_total{"):
                byts += v
    return msgs, byts


def fanout_run(tmp):
    brokers = []
    for i in range(3):
        brokers.append({"port": free_port(), "http": free_port(), "cl": free_port(), "id": "b%d" % i})
    peers = ",".join("127.0.0.1:%d" % b["cl"] for b in brokers)
    procs = []
    for b in brokers:
        procs.append(subprocess.Popen(
            [os.path.join(BUILD, "fanoutd"), "--listen", "127.0.0.1:%d" % b["port"],
             "--http", "127.0.0.1:%d" % b["http"], "--cluster-listen", "127.0.0.1:%d" % b["cl"],
             "--cluster-peers", peers, "--node-id", b["id"], "--log-level", "warn"],
            stderr=open(os.path.join(tmp, b["id"] + ".log"), "w")))
    try:
        for b in brokers:
            wait(lambda: metrics(b["http"]).get("fanout_cluster_links_up") == 2, what="links")
        rows = []
        for k in (1, 2, 3):
            topic = "bench.copies.%d" % k
            # find the home: the broker whose topics_homed grows after a probe
            before = [metrics(b["http"]).get("fanout_cluster_topics_homed", 0) for b in brokers]
            subprocess.run([os.path.join(BUILD, "fanout"), "pub", "-s", "127.0.0.1:%d" % brokers[0]["port"],
                            topic, "probe", "--confirm"], check=True, capture_output=True)
            after = [metrics(b["http"]).get("fanout_cluster_topics_homed", 0) for b in brokers]
            home = [i for i in range(3) if after[i] > before[i]][0]
            pub = (home + 1) % 3
            order = [pub, (home + 2) % 3, home]          # interested: the publisher's first
            subs = []
            for i in order[:k]:
                subs.append(subprocess.Popen(
                    [os.path.join(BUILD, "fanout"), "sub", "-s", "127.0.0.1:%d" % brokers[i]["port"],
                     topic, "-n", str(N), "--timeout", "60"], stdout=subprocess.DEVNULL))
            want = {i: 1 for i in order[:k]}
            for j in range(3):
                for i in range(3):
                    if i != j:
                        name = 'fanout_cluster_peer_interest_entries{node="%s"}' % brokers[i]["id"]
                        wait(lambda: metrics(brokers[j]["http"]).get(name, 0) == want.get(i, 0), what="interest")
            m0, b0 = fanout_counts(brokers)
            subprocess.run([os.path.join(BUILD, "fanout"), "pub", "-s", "127.0.0.1:%d" % brokers[pub]["port"],
                            topic, "-c", str(N), "-z", str(SIZE), "--confirm"], check=True,
                           stdout=subprocess.DEVNULL)
            for s in subs:
                if s.wait(timeout=120) != 0:
                    raise SystemExit("a fanout subscriber did not get %d messages" % N)
            m1, b1 = fanout_counts(brokers)
            rows.append((k, (m1 - m0) / N, (b1 - b0) / N, home != pub and "no" or "yes"))
        return rows
    finally:
        stop(procs)


# ------------------------------------------------------------ nats

class Nats:
    """The few lines of the NATS text protocol a counter needs."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
        self.f.readline()                                 # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        self.expect(b"PONG")

    def expect(self, what):
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("nats closed the connection")
            if line.startswith(b"PING"):
                self.s.sendall(b"PONG\r\n")
            elif line.startswith(what):
                return line

    def sub(self, subject):
        self.s.sendall(b"SUB %s 1\r\nPING\r\n" % subject.encode())
        self.expect(b"PONG")

    def count(self, n):
        got = 0
        while got < n:
            line = self.expect(b"MSG")
            size = int(line.split()[-1])
            self.f.read(size + 2)
            got += 1

    def pub(self, subject, n, size):
        payload = b"x" * size
        frame = b"PUB %s %d\r\n%s\r\n" % (subject.encode(), size, payload)
        for _ in range(0, n, 1000):
            self.s.sendall(frame * min(1000, n))
        self.s.sendall(b"PING\r\n")
        self.expect(b"PONG")


def routez(mon):
    return json.loads(http(mon, "/routez"))["routes"]


def nats_counts(servers):
    msgs = byts = 0
    for sv in servers:
        for r in routez(sv["mon"]):
            msgs += r.get("out_msgs", 0)
            byts += r.get("out_bytes", 0)
    return msgs, byts


def nats_run(tmp):
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(exe):
        return None
    servers = [{"port": free_port(), "mon": free_port(), "cl": free_port()} for _ in range(3)]
    routes = ",".join("nats://127.0.0.1:%d" % s["cl"] for s in servers)
    procs = []
    for i, s in enumerate(servers):
        procs.append(subprocess.Popen(
            [exe, "-a", "127.0.0.1", "-p", str(s["port"]), "-m", str(s["mon"]), "-n", "n%d" % i,
             "--cluster_name", "bench", "--cluster", "nats://127.0.0.1:%d" % s["cl"], "--routes", routes],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "nats%d.log" % i), "w")))
    try:
        for s in servers:
            wait(lambda: len(routez(s["mon"])) == 2, what="nats routes")
        rows = []
        for k in (1, 2, 3):
            subject = "bench.copies.%d" % k
            pub = 0
            order = [0, 1, 2]                        # interested: the publisher's first
            subs = [Nats(servers[i]["port"]) for i in order[:k]]
            for c in subs:
                c.sub(subject)
            time.sleep(0.5)                          # route interest propagation has no counter to wait on
            m0, b0 = nats_counts(servers)
            p = Nats(servers[pub]["port"])
            p.pub(subject, N, SIZE)
            for c in subs:
                c.count(N)
            m1, b1 = nats_counts(servers)
            rows.append((k, (m1 - m0) / N, (b1 - b0) / N))
            for c in subs + [p]:
                c.s.close()
        return rows
    finally:
        stop(procs)


def main():
    tmp = tempfile.mkdtemp(prefix="fo-copies.")
    try:
        fo = fanout_run(tmp)
        na = nats_run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d messages of %d bytes per case, three brokers on loopback" % (N, SIZE))
    print()
    print("| brokers with subscribers | fanout copies / msg | fanout link bytes / msg | nats copies / msg | nats route bytes / msg |")
    print("|---|---|---|---|---|")
    for i, (k, c, b, _) in enumerate(fo):
        nc = "%.2f" % na[i][1] if na else "-"
        nb = "%.1f" % na[i][2] if na else "-"
        print("| %d | %.2f | %.1f | %s | %s |" % (k, c, b, nc, nb))
    if not na:
        print("\n(nats-server not found: its columns are empty)")


if __name__ == "__main__":
    main()
