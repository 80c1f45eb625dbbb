"""install_test.py -- `make install` into a temporary DESTDIR, as a packager
or an administrator would run it, then a program built against what it
installed.

- the tree: binaries, the library (static, shared with its soname link),
  the headers under include/fanout/, fanout.pc, both man pages, the
  example config (in share/doc, and in etc/fanout -- never overwritten),
  the systemd unit (Type=notify, --check-config before the start);
- pkg-config: `#include <fanout/fanout.h>` builds with --cflags, the
  examples link shared and -- really -- static (readelf), and they talk to
  the installed fanoutd;
- the installed unit passes `systemd-analyze verify`, when there is one.

The install reuses the build under test ($FO_BUILD, with its SANITIZE):
it must not rebuild anything (the flags stamp is checked).
"""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from suite import Fail, Skip, build_dir, main, root, test

ROOT = root()
PREFIX = "/usr/local"
STATE = {}


def sanitize():
    """The SANITIZE of the build under test, from its flags stamp."""
    try:
        with open(os.path.join(build_dir(), ".flags")) as f:
            m = re.search(r"-fsanitize=(\S+)", f.read())
    except OSError:
        return ""
    return m.group(1) if m else ""


def make_env():
    """The environment for a make of our own: the parent make's variables
    stay (so nothing rebuilds), its jobserver does not."""
    env = dict(os.environ)
    flags = env.get("MAKEFLAGS", "")
    keep = [w for w in shlex.split(flags) if not w.startswith(("--jobserver", "-j", "--j"))]
    env["MAKEFLAGS"] = " ".join(shlex.quote(w) for w in keep)
    env.pop("MFLAGS", None)
    return env


def destdir():
    if "dest" not in STATE:
        STATE["dest"] = tempfile.mkdtemp(prefix="fo-install-")
        stamp = os.path.join(build_dir(), ".flags")
        before = open(stamp).read() if os.path.exists(stamp) else None
        args = ["make", "-s", "install", "DESTDIR=" + STATE["dest"], "PREFIX=" + PREFIX,
                "BUILD=" + os.path.relpath(build_dir(), ROOT)]
        if sanitize():
            args.append("SANITIZE=" + sanitize())
        r = subprocess.run(args, cwd=ROOT, env=make_env(), capture_output=True, text=True,
                           timeout=600)
        STATE["install_rc"], STATE["install_out"] = r.returncode, r.stdout + r.stderr
        after = open(stamp).read() if os.path.exists(stamp) else None
        if before != after:
            raise Fail("make install changed the build's flags stamp (it would rebuild): %r -> %r"
                       % (before, after))
    if STATE["install_rc"] != 0:
        raise Fail("make install exit %d:\n%s" % (STATE["install_rc"], STATE["install_out"]))
    return STATE["dest"]


def inst(path):
    return os.path.join(destdir(), path.lstrip("/"))


@test
def installs_the_tree():
    want = {
        "bin/fanoutd": 0o755, "bin/fanout": 0o755,
        "lib/libfanout.a": 0o644, "lib/libfanout.so.0": 0o755,
        "include/fanout/fanout.h": 0o644, "include/fanout/fo_err.h": 0o644,
        "lib/pkgconfig/fanout.pc": None,
        "share/man/man1/fanout.1": 0o644, "share/man/man8/fanoutd.8": 0o644,
        "share/doc/fanout/fanoutd.conf": 0o644, "etc/fanout/fanoutd.conf": 0o644,
        "lib/systemd/system/fanoutd.service": None,
    }
    for rel, mode in want.items():
        p = inst(PREFIX + "/" + rel)
        if not os.path.isfile(p):
            raise Fail("%s was not installed" % rel)
        if mode is not None and os.stat(p).st_mode & 0o777 != mode:
            raise Fail("%s: mode %o, want %o" % (rel, os.stat(p).st_mode & 0o777, mode))
    link = inst(PREFIX + "/lib/libfanout.so")
    assert os.path.islink(link) and os.readlink(link) == "libfanout.so.0", "libfanout.so link"
    assert not os.path.exists(inst(PREFIX + "/include/fanout.h")), "headers belong in include/fanout/"
    r = subprocess.run([inst(PREFIX + "/bin/fanoutd"), "--version"], capture_output=True, text=True)
    assert r.stdout == "fanoutd %s\n" % open(os.path.join(ROOT, "VERSION")).read().strip(), r.stdout
    pc = open(inst(PREFIX + "/lib/pkgconfig/fanout.pc")).read()
    for line in ("prefix=/usr/local", "includedir=${prefix}/include", "libdir=${prefix}/lib",
                 "Cflags: -I${includedir}", "Libs: -L${libdir} -lfanout",
                 "Requires.private: libprotobuf-c"):
        assert line in pc, "fanout.pc lacks %r:\n%s" % (line, pc)
    for page in ("share/man/man1/fanout.1", "share/man/man8/fanoutd.8"):
        r = subprocess.run(["man", "-l", inst(PREFIX + "/" + page)], capture_output=True,
                           text=True, env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING=""))
        if shutil.which("man") and (r.returncode or "NAME" not in r.stdout):
            raise Fail("man -l %s: exit %d %s" % (page, r.returncode, r.stderr))


@test
def the_unit_is_type_notify_and_checks_the_config_first():
    unit = open(inst(PREFIX + "/lib/systemd/system/fanoutd.service")).read()
    for line in ("Type=notify",
                 "ExecStartPre=/usr/local/bin/fanoutd --config /usr/local/etc/fanout/fanoutd.conf --check-config",
                 "ExecStart=/usr/local/bin/fanoutd --config /usr/local/etc/fanout/fanoutd.conf",
                 "ExecReload=/bin/kill -HUP $MAINPID", "Documentation=man:fanoutd(8)",
                 "WantedBy=multi-user.target"):
        assert "\n" + line + "\n" in unit, "the unit lacks %r" % line
    assert "@" not in re.sub(r"^#.*$", "", unit, flags=re.M), "an unfilled @VAR@ in the unit"
    # the command the unit runs first passes on the installed config
    r = subprocess.run([inst(PREFIX + "/bin/fanoutd"), "--config",
                        inst(PREFIX + "/etc/fanout/fanoutd.conf"), "--check-config"],
                       capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")})
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        raise Skip("no systemd-analyze")
    d = tempfile.mkdtemp(prefix="fo-unit-")
    try:
        # the same unit, pointed at the DESTDIR copies so verify can check them
        path = os.path.join(d, "fanoutd.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/local/", inst(PREFIX) + "/"))
        r = subprocess.run([analyze, "verify", path], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MANPATH=inst(PREFIX + "/share/man")))
        msgs = [l for l in (r.stdout + r.stderr).splitlines() if "fanoutd" in l]
        if r.returncode != 0 or msgs:
            raise Fail("systemd-analyze verify (exit %d): %s" % (r.returncode, "\n".join(msgs)))
    finally:
        shutil.rmtree(d)


@test
def an_existing_config_is_kept():
    etc = inst(PREFIX + "/etc/fanout/fanoutd.conf")
    with open(etc, "w") as f:
        f.write("threads 1\n")
    STATE.pop("dest_done", None)
    args = ["make", "-s", "install", "DESTDIR=" + destdir(), "PREFIX=" + PREFIX,
            "BUILD=" + os.path.relpath(build_dir(), ROOT)]
    if sanitize():
        args.append("SANITIZE=" + sanitize())
    r = subprocess.run(args, cwd=ROOT, env=make_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert open(etc).read() == "threads 1\n", "make install overwrote etc/fanout/fanoutd.conf"
    assert "exists: kept" in r.stdout, r.stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pkg_config(*args):
    """pkg-config on the installed fanout.pc, relocated into DESTDIR."""
    env = dict(os.environ, PKG_CONFIG_PATH=inst(PREFIX + "/lib/pkgconfig"))
    r = subprocess.run(["pkg-config", "--define-variable=prefix=" + inst(PREFIX)] + list(args) +
                       ["fanout"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, "pkg-config %s: %s" % (" ".join(args), r.stderr)
    return shlex.split(r.stdout)


def needed(binary):
    r = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


def cc(out, src, flags):
    san = ["-fsanitize=" + sanitize()] if sanitize() else []
    cmd = ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-o", out,
           os.path.join(ROOT, "examples", src)] + san + flags
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise Fail("%s\n%s" % (" ".join(cmd), r.stderr))


@test
def programs_build_against_it_and_talk_to_it():
    cflags = pkg_config("--cflags")
    assert cflags[0] == "-I" + inst(PREFIX + "/include"), cflags
    work = tempfile.mkdtemp(prefix="fo-apps-")
    try:
        shared = ["-Wl,-rpath," + inst(PREFIX + "/lib")]
        cc(os.path.join(work, "producer"), "producer.c", cflags + pkg_config("--libs") + shared)
        cc(os.path.join(work, "consumer"), "consumer.c", cflags + pkg_config("--libs") + shared)
        assert "libfanout.so.0" in needed(os.path.join(work, "producer")), \
            needed(os.path.join(work, "producer"))
        # CLIENT.md's static line: libfanout and libprotobuf-c inside, libc shared
        static = cflags + ["-Wl,-Bstatic"] + pkg_config("--libs", "--static") + ["-Wl,-Bdynamic"]
        cc(os.path.join(work, "producer-static"), "producer.c", static)
        libs = needed(os.path.join(work, "producer-static"))
        bad = [l for l in libs if l.startswith(("libfanout", "libprotobuf-c"))]
        if bad:
            raise Fail("the static link still needs %s (all: %s)" % (bad, libs))
        # against the installed broker
        port, hport = free_port(), free_port()
        broker = subprocess.Popen([inst(PREFIX + "/bin/fanoutd"), "--listen", "127.0.0.1:%d" % port,
                                   "--http", "127.0.0.1:%d" % hport, "--threads", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            addr = "127.0.0.1:%d" % port
            deadline = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise Fail("the installed fanoutd does not listen")
                    time.sleep(0.05)
            for producer in ("producer", "producer-static"):
                r = subprocess.run([os.path.join(work, producer), addr, "inst.ticks", "5"],
                                   capture_output=True, text=True, timeout=30)
                assert r.returncode == 0, "%s: %s" % (producer, r.stderr)
            # both runs are retained: 2 x (5 ticks + "done")
            r = subprocess.run([os.path.join(work, "consumer"), addr, "inst.>", "12"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            assert r.stdout.count("tick ") == 10 and r.stdout.count("done") == 2, r.stdout
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait(15)
    finally:
        shutil.rmtree(work)


@test
def cleanup():
    if "dest" in STATE:
        shutil.rmtree(STATE["dest"])


if __name__ == "__main__":
    main()
