"""conformance.py -- docs/PROTOCOL.md, section by section, against fanoutd.

A second implementation of the client side written from the document
alone: every expectation here is a sentence of docs/PROTOCOL.md (or one of
the decisions recorded in issue 9), never what the broker's C code happens
to do. Run it with tests/conformance/run (which generates fanout_pb2 from
proto/fanout.proto first).

    tests/conformance/run [-v] [SUBSTRING...]   # only tests whose name contains one

Output: one line per test, then cmocka-style totals ([  PASSED  ] N
test(s). ...), which is what tests/run.sh counts.
"""
import os
import signal
import sys
import time
import traceback

import broker as brokermod
import wire

from harness import TESTS, BROKERS, Skip, Ctx


class Suite:
    def __init__(self, build, verbose=False):
        self.build = build
        self.verbose = verbose
        self.brokers = {}
        self.broker_args = dict(BROKERS)
        self.done = []
        self.current_brokers = ()
        self.dead = []

    def get_broker(self, key):
        b = self.brokers.get(key)
        if b is None:
            if key not in self.broker_args:
                raise RuntimeError("no broker configuration %r" % key)
            b = brokermod.Broker(self.build, key, self.broker_args[key])
            self.brokers[key] = b
            b.start()
        elif not b.stopped and not b.alive():
            raise AssertionError("broker %r is no longer running (exit %s, log %s)" %
                                 (key, b.proc.returncode, b.log_path))
        return b

    def release(self, key):
        b = self.brokers.get(key)
        if b is None or b.stopped:
            return
        if not b.alive():
            if not b.expect_exit:
                self.dead.append("broker_%s_died_during_the_suite (exit %s, log %s)" %
                                 (key, b.proc.returncode, b.log_path))
            b.stopped = True
            return
        rc = b.stop()
        if rc != 0:
            # §3 step 6: SIGTERM drains and closes; a non-zero status is a crash
            # or, under a sanitizer, a report (see the log)
            self.dead.append("broker_%s_exit_status_%s_after_SIGTERM (log %s)" % (key, rc, b.log_path))

    def stop_all(self):
        for b in self.brokers.values():
            try:
                b.kill() if b.stopped else b.stop(timeout=5)
            except Exception:
                b.kill()


def _interrupt(sig, frame):
    raise KeyboardInterrupt


def main(argv):
    verbose = "-v" in argv
    pats = [a for a in argv if not a.startswith("-")]
    build = os.environ.get("FO_BUILD", "build")
    # the section modules register their tests in document order
    import t_framing, t_messages, t_topics, t_replay, t_delivery, t_errors, t_hexdump, t_mcast, t_http  # noqa: F401
    tests = [t for t in TESTS if not pats or any(p in t[0] for p in pats)]
    last_use = {}
    for i, (_, _, keys) in enumerate(tests):
        for k in keys:
            last_use[k] = i
    # SIGTERM (tests/run.sh's timeout) unwinds like ^C: brokers get stopped
    signal.signal(signal.SIGTERM, _interrupt)
    suite = Suite(build, verbose)
    passed, failed, skipped = [], [], []
    t0 = time.monotonic()
    print("[==========] Running %d test(s)." % len(tests), flush=True)
    try:
        for i, (name, fn, keys) in enumerate(tests):
            suite.current_brokers = keys
            ctx = Ctx(suite, name)
            start = time.monotonic()
            status, why = "ok", ""
            try:
                fn(ctx)
            except Skip as e:
                status, why = "skip", str(e)
            except (AssertionError, wire.Timeout, wire.Closed) as e:
                status, why = "fail", str(e) or type(e).__name__
                if verbose:
                    traceback.print_exc()
            except KeyboardInterrupt:
                raise
            except Exception as e:
                status = "fail"
                tb = traceback.extract_tb(e.__traceback__)
                where = "%s:%d" % (os.path.basename(tb[-1].filename), tb[-1].lineno) if tb else "?"
                why = "%s: %s (at %s)" % (type(e).__name__, e, where)
                if verbose:
                    traceback.print_exc()
            finally:
                ctx.close()
            secs = time.monotonic() - start
            suite.done.append(name)
            if status == "ok":
                passed.append(name)
                print("[       OK ] %s (%.2fs)" % (name, secs), flush=True)
            elif status == "skip":
                skipped.append(name)
                print("[  SKIPPED ] %s: %s" % (name, why), flush=True)
            else:
                failed.append(name)
                print("[  FAILED  ] %s (%.2fs): %s" % (name, secs, why.replace("\n", " | ")), flush=True)
            for k in keys:
                if last_use[k] == i:
                    suite.release(k)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        suite.stop_all()
        return 130
    finally:
        suite.stop_all()
    for d in suite.dead:
        failed.append(d)
        print("[  FAILED  ] %s" % d)
    print("[==========] %d test(s) run in %.1fs." % (len(tests), time.monotonic() - t0))
    print("[  PASSED  ] %d test(s)." % len(passed))
    if skipped:
        print("[  SKIPPED ] %d test(s)." % len(skipped))
    if failed:
        print("[  FAILED  ] %d test(s), listed below:" % len(failed))
        for n in failed:
            print("[  FAILED  ] %s" % n)
        print("\n %d FAILED TEST(S)" % len(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
