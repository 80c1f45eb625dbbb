"""suite.py -- a few lines of test runner for the Python suites of
tests/docs, tests/install and tests/readme: register with @test, call
main(); prints one line per test and cmocka-style totals, which
tests/run.sh reads. A test fails by raising (assert or Fail), skips by
raising Skip."""
import os
import sys
import time
import traceback

TESTS = []


class Skip(Exception):
    pass


class Fail(Exception):
    pass


def test(fn):
    TESTS.append(fn)
    return fn


def root():
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def build_dir():
    b = os.environ.get("FO_BUILD", "build")
    return b if os.path.isabs(b) else os.path.join(root(), b)


def main():
    only = sys.argv[1:]
    passed, failed, skipped = [], [], []
    for fn in TESTS:
        name = fn.__name__
        if only and not any(o in name for o in only):
            continue
        t0 = time.time()
        print("[ RUN      ] %s" % name, flush=True)
        try:
            fn()
        except Skip as e:
            skipped.append(name)
            print("[  SKIPPED ] %s: %s" % (name, e), flush=True)
            continue
        except Exception as e:  # noqa: BLE001 -- every failure is reported
            failed.append(name)
            why = str(e) or e.__class__.__name__
            if not isinstance(e, (Fail, AssertionError)) or not str(e):
                why += "\n" + traceback.format_exc()
            print("[  FAILED  ] %s (%.1fs): %s" % (name, time.time() - t0,
                                                   why.rstrip().replace("\n", "\n    ")), flush=True)
            continue
        passed.append(name)
        print("[       OK ] %s (%.1fs)" % (name, time.time() - t0), flush=True)
    print("[==========] %d test(s) run." % (len(passed) + len(failed) + len(skipped)))
    print("[  PASSED  ] %d test(s)." % len(passed))
    if skipped:
        print("[  SKIPPED ] %d test(s)." % len(skipped))
    if failed:
        print("[  FAILED  ] %d test(s), listed below:" % len(failed))
        for n in failed:
            print("[  FAILED  ] %s" % n)
        print("\n %d FAILED TEST(S)" % len(failed))
    sys.exit(1 if failed else 0)
