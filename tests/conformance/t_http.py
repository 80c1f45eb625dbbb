"""/healthz and /metrics (docs/CONFIG.md `http`; issue 9 decisions), and
checks over every ERROR the suite received (§4.11, §14)."""
import shutil
import subprocess

import wire
from harness import check, eq, pb, publish_acked, sub, test

# Counters docs/PROTOCOL.md and docs/MULTICAST.md name.
DOC_METRICS = [
    "fanout_protocol_errors_total", "fanout_drops_slow_consumer_total", "fanout_gaps_sent_total",
    "fanout_slow_consumer_disconnects_total", "fanout_congestions_total",
    "fanout_publishers_paused_total", "fanout_publish_refused_memory_total",
    "fanout_idle_timeouts_total", "fanout_repairs_served_total", "fanout_repairs_missed_total",
    "fanout_mcast_oversize_total", "fanout_mcast_messages_total", "fanout_mcast_datagrams_total",
    "fanout_mcast_send_errors_total",
]


@test("http_healthz")
def _(ctx):
    """GET /healthz: 200, body "ok\\n", text/plain; charset=utf-8."""
    st, hdr, body = ctx.b.get("/healthz")
    eq(st, 200, "status")
    eq(body, b"ok\n", "body")
    eq(hdr.get("content-type"), "text/plain; charset=utf-8", "content type")


@test("http_metrics_documented_counters")
def _(ctx):
    """/metrics: 200, text/plain; version=0.0.4; charset=utf-8, with every
    counter the docs name."""
    st, hdr, body = ctx.b.get("/metrics")
    eq(st, 200, "status")
    eq(hdr.get("content-type"), "text/plain; version=0.0.4; charset=utf-8", "content type")
    m = ctx.b.metrics()
    missing = [n for n in DOC_METRICS if not any(k == n or k.startswith(n + "{") for k in m)]
    eq(missing, [], "documented metrics missing from /metrics")


@test("http_metrics_promtool_clean")
def _(ctx):
    """/metrics of a broker that has done some traffic passes `promtool check
    metrics` with no output at all (warnings count)."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    check(shutil.which(promtool) is not None, "promtool not found (apt-get install prometheus)")
    t = ctx.topic()
    s = ctx.client()
    sub(s, 1, t)
    c = ctx.client()
    publish_acked(c, t, [b"x"] * 10)
    c.send(wire.unsubscribe(77))
    c.expect("error")
    st, _, body = ctx.b.get("/metrics")
    eq(st, 200, "status")
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode(errors="replace").strip()
    check(r.returncode == 0 and not out, "promtool check metrics (exit %d): %s", r.returncode,
          out.replace("\n", " | "))


@test("s14_every_error_had_code_and_one_line_text", brokers=())
def _(ctx):
    """Over the whole run: every ERROR carried a code the protocol defines and
    v1 sends (never ERR_UNKNOWN 0, never ERR_TRUNCATED 17) and a one-line,
    non-empty text."""
    check(wire.ERRORS_SEEN, "no ERROR seen at all (run the whole suite)")
    names = dict((v, k) for k, v in pb.ErrorCode.items())
    bad = []
    for has, code, text in wire.ERRORS_SEEN:
        if not has:
            bad.append("an ERROR without code")
        elif code in (0, 17) or code not in names:
            bad.append("code %d (%s)" % (code, names.get(code, "undefined")))
        if not text or "\n" in text:
            bad.append("text %r" % text)
    eq(sorted(set(bad)), [], "bad ERRORs among the %d received" % len(wire.ERRORS_SEEN))
