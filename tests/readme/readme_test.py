"""readme_test.py -- every command README.md shows works, verbatim, in a fresh
copy of the tree, in the order shown.

Each ```sh block of the README is preceded by a marker saying how to run
it (a block without one fails the suite, so none is forgotten):

  <!-- readme-test: run [interrupt-after=S] [stdin=WORD] [expect=REGEX] -->
        run it (bash -e -o pipefail); it must exit 0 within 300 s; with
        interrupt-after, Ctrl-C (SIGINT to its process group) after S
        seconds, and it must still exit 0; stdin=WORD is typed (WORD and a
        newline) instead of an empty stdin; expect= is a regular expression
        its output must match
  <!-- readme-test: daemon wait-port=N -->
        start it in the background, as in "another terminal", and go on
        once 127.0.0.1:N accepts (300 s: `make run` builds first); at the
        end it gets Ctrl-C and must stop within 30 s
  <!-- readme-test: background name=X [wait-metric=M] -->
        start it in the background; with wait-metric, go on once the
        broker's /metrics (127.0.0.1:7401) shows M >= 1
  <!-- readme-test: output name=X -->   (before a ```text block)
        the background command X exits 0 within 30 s, having printed
        exactly that text
  <!-- readme-test: docker ... | docker-daemon ... -->
        as run / daemon, when `docker info` answers; skipped otherwise
  <!-- readme-test: skip -- REASON -->
        not run (it installs into the system, or is the test suite itself)

The copy is what a clone has: the files git tracks, with their contents in
the working tree, in a temporary directory, built from nothing. The
commands see a clean environment (no FANOUT_*, no make variables of the
make running this test). As root, everything runs in a network namespace
of its own (unshare -n), so the README's fixed ports (7400, 7401) cannot
clash with anything on the machine; otherwise those ports must be free.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from suite import Fail, Skip, main, root, test

ROOT = root()
MARK = re.compile(r"^<!-- readme-test: (\S+)(.*?) -->\s*$")


def parse_readme(text):
    """[(line, kind, {args}, body, lang)] in order; raises on an unmarked sh block."""
    lines = text.splitlines()
    blocks, pending, i = [], None, 0
    while i < len(lines):
        m = MARK.match(lines[i])
        if m:
            args = {}
            rest = m.group(2)
            if m.group(1) != "skip":
                for a in rest.split():
                    k, _, v = a.partition("=")
                    args[k] = v
            else:
                args["why"] = rest.strip(" -")
            pending = (i + 1, m.group(1), args)
            i += 1
            continue
        f = re.match(r"^```(\w*)\s*$", lines[i])
        if f:
            lang, start = f.group(1), i + 1
            j = start
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            body = "\n".join(lines[start:j]) + "\n"
            if pending and pending[0] <= i and all(not l.strip() for l in lines[pending[0]:i]):
                blocks.append((start, pending[1], pending[2], body, lang))
            elif lang in ("sh", "bash", "shell", "console"):
                raise Fail("README.md:%d: a ```%s block without a readme-test marker" % (start, lang))
            pending = None
            i = j + 1
            continue
        if lines[i].strip():
            pending = None                   # a marker is for the block right after it
        i += 1
    return blocks


def docker_works():
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0


def fresh_copy():
    dest = tempfile.mkdtemp(prefix="fo-readme-")
    r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if r.returncode == 0 and r.stdout:
        files = [f for f in r.stdout.decode().split("\0") if f]
    else:                                    # not a git checkout: the tree minus builds
        files = []
        for dp, dn, fn in os.walk(ROOT):
            dn[:] = [d for d in dn if not d.startswith(("build", ".git"))]
            files += [os.path.relpath(os.path.join(dp, f), ROOT) for f in fn]
    for f in files:
        src = os.path.join(ROOT, f)
        if not os.path.lexists(src):
            continue                         # deleted in the working tree
        os.makedirs(os.path.join(dest, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, f), follow_symlinks=False)
    return dest


def clean_env():
    keep = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "LC_ALL", "TERM")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.setdefault("LANG", "C.UTF-8")
    env["TERM"] = "dumb"
    return env


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def metric(name, port=7401):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


class Job:
    def __init__(self, body, cwd, name, stdin=None):
        self.out = tempfile.NamedTemporaryFile(prefix="fo-readme-%s-" % name, delete=False)
        self.err = tempfile.NamedTemporaryFile(prefix="fo-readme-%s-err-" % name, delete=False)
        STATE["files"] += [self.out.name, self.err.name]
        inp = subprocess.DEVNULL
        if stdin is not None:
            inp = tempfile.TemporaryFile()
            inp.write((stdin + "\n").encode())
            inp.seek(0)
        self.p = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", body], cwd=cwd,
                                  env=clean_env(), stdin=inp, stdout=self.out,
                                  stderr=self.err, start_new_session=True)

    def text(self):
        with open(self.out.name, errors="replace") as f:
            out = f.read()
        with open(self.err.name, errors="replace") as f:
            err = f.read()
        return out, err

    def ctrl_c(self):
        try:
            os.killpg(self.p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def wait(self, secs):
        try:
            return self.p.wait(secs)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
            return None

    def tail(self):
        out, err = self.text()
        return "stdout:\n%s\nstderr:\n%s" % (out[-3000:], err[-3000:])


STATE = {"jobs": {}, "daemons": [], "failed": None, "files": []}


def step(lineno, kind, args, body):
    if STATE["failed"]:
        raise Skip("after the failure of README.md:%d" % STATE["failed"])
    cwd = STATE["cwd"]
    if kind.startswith("docker") and not STATE["docker"]:
        raise Skip("docker does not answer here (CI's make docker-test runs the stack)")
    if kind in ("run", "docker"):
        job = Job(body, cwd, "run", args.get("stdin"))
        if "interrupt-after" in args:
            time.sleep(float(args["interrupt-after"]))
            if job.p.poll() is not None:
                raise Fail("it ended before Ctrl-C (exit %s):\n%s" % (job.p.returncode, job.tail()))
            job.ctrl_c()
            rc = job.wait(30)
            if rc == 0 and len(job.text()[0].splitlines()) < 2:
                raise Fail("it printed less than two lines in %s s:\n%s" %
                           (args["interrupt-after"], job.tail()))
        else:
            rc = job.wait(300)
        if rc != 0:
            raise Fail("exit %s:\n%s" % (rc, job.tail()))
        if "expect" in args and not re.search(args["expect"], job.text()[0], re.M):
            raise Fail("its output does not match %r:\n%s" % (args["expect"], job.tail()))
        STATE["last"] = job.text()
        return
    if kind in ("daemon", "docker-daemon"):
        job = Job(body, cwd, "daemon")
        STATE["daemons"].append((lineno, job))
        port = int(args["wait-port"])
        deadline = time.time() + 300
        while not port_open(port):
            if job.p.poll() is not None:
                raise Fail("it exited (%s) before port %d answered:\n%s" %
                           (job.p.returncode, port, job.tail()))
            if time.time() > deadline:
                raise Fail("port %d did not answer within 300 s:\n%s" % (port, job.tail()))
            time.sleep(0.2)
        return
    if kind == "background":
        job = Job(body, cwd, args["name"])
        STATE["jobs"][args["name"]] = job
        if "wait-metric" in args:
            deadline = time.time() + 30
            while (metric(args["wait-metric"]) or 0) < 1:
                if job.p.poll() is not None:
                    raise Fail("it exited (%s):\n%s" % (job.p.returncode, job.tail()))
                if time.time() > deadline:
                    raise Fail("%s did not reach 1 within 30 s" % args["wait-metric"])
                time.sleep(0.05)
        return
    if kind == "output":
        job = STATE["jobs"].get(args["name"])
        if not job:
            raise Fail("no background command named %s before" % args["name"])
        rc = job.wait(30)
        out, _ = job.text()
        if rc != 0:
            raise Fail("%s: exit %s:\n%s" % (args["name"], rc, job.tail()))
        if out != body:
            raise Fail("%s printed %r, the README says %r" % (args["name"], out, body))
        return
    raise Fail("unknown readme-test kind %r" % kind)


def stop_daemons():
    for lineno, job in reversed(STATE["daemons"]):
        if job.p.poll() is None:
            job.ctrl_c()
            rc = job.wait(30)
            if rc is None:
                raise Fail("README.md:%d did not stop within 30 s of Ctrl-C:\n%s" % (lineno, job.tail()))
        out, err = job.text()
        if "make run" in job.p.args[-1] and "INFO  main - stopped" not in err:
            raise Fail("README.md:%d: fanoutd did not drain and stop on Ctrl-C:\n%s" %
                       (lineno, job.tail()))


def register():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    try:
        blocks = parse_readme(text)
    except Fail as e:
        def unmarked():
            raise e
        test(unmarked)
        return

    def setup():
        STATE["docker"] = docker_works()
        if not STATE["netns"] and not STATE["docker"]:
            busy = [p for p in (7400, 7401) if port_open(p)]
            if busy:
                raise Fail("ports %s are in use and no network namespace could be made" % busy)
        STATE["cwd"] = fresh_copy()
    setup.__name__ = "fresh_copy_of_the_tree"
    test(setup)
    for lineno, kind, args, body, lang in blocks:
        if lang == "text" and kind != "output":
            continue

        def one(lineno=lineno, kind=kind, args=args, body=body):
            if kind == "skip":
                raise Skip(args.get("why", ""))
            try:
                step(lineno, kind, args, body)
            except Fail:
                STATE["failed"] = lineno
                raise
        first = body.strip().splitlines()[0] if body.strip() else ""
        one.__name__ = "line_%d_%s: %s" % (lineno, kind, first[:60])
        test(one)

    def teardown():
        try:
            stop_daemons()
        finally:
            for job in STATE["jobs"].values():
                if job.p.poll() is None:
                    os.killpg(job.p.pid, signal.SIGKILL)
            if not os.environ.get("FO_KEEP"):
                if STATE.get("cwd"):
                    shutil.rmtree(STATE["cwd"], ignore_errors=True)
                for f in STATE["files"]:
                    try:
                        os.unlink(f)
                    except OSError:
                        pass
    teardown.__name__ = "ctrl_c_stops_what_was_started"
    test(teardown)


def in_own_netns():
    """Re-run this file in a network namespace of its own (root only)."""
    if os.environ.get("FO_README_NETNS") == "1":
        return True
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip") or docker_works():
        return False
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        return False                         # no CAP_SYS_ADMIN here (a container)
    env = dict(os.environ, FO_README_NETNS="1")
    r = subprocess.run(["unshare", "--net", "sh", "-c",
                        'ip link set lo up && exec "$0" "$@"', sys.executable] + sys.argv,
                       env=env)
    sys.exit(r.returncode)


if __name__ == "__main__":
    STATE["netns"] = in_own_netns()
    register()
    main()
