"""docs_test.py -- what people read agrees with what the programs do.

- docs/man/fanoutd.8 lists exactly the options of `fanoutd --help`, each
  with the default, the environment variable and the reload mark --help
  gives; docs/man/fanout.1 lists, per command, exactly the options of
  `fanout COMMAND --help`; both carry the VERSION and render without a
  groff warning.
- scripts/fanoutd.conf (the installed example) has every option that a
  file may hold, at its --help default, and passes --check-config as it
  is and with every option line uncommented.
- No user-facing text (README, docs, man pages, --help) names a path
  outside the repository, and every relative link in the Markdown files
  points at a file of the tree.
"""
import glob
import os
import re
import shutil
import subprocess
import tempfile

from suite import Fail, Skip, build_dir, main, root, test

ROOT = root()


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def run(*args):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def fanoutd_help():
    rc, out, _ = run(os.path.join(build_dir(), "fanoutd"), "--help")
    assert rc == 0, "fanoutd --help exit %d" % rc
    return out


def help_options(text):
    """{name: (default, env, reload)} of fanoutd --help's table, plus the
    action flags with None."""
    opts, lines = {}, text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^  --([a-z][a-z-]*)", line)
        if not m:
            continue
        name = m.group(1)
        if name in ("help", "version", "check-config", "hash-password"):
            opts[name] = None
            continue
        for follow in lines[i + 1:i + 3]:
            d = re.match(r"^\s+default (.*?)(?:, [^,]*)?, \$(FANOUT_[A-Z_]+)( \(\*\))?$", follow)
            if d:
                opts[name] = (d.group(1), d.group(2), bool(d.group(3)))
                break
        else:
            raise Fail("--help: no default line for --%s" % name)
    return opts


def unroff(s):
    s = re.sub(r"\\f[BIRP]", "", s)
    return s.replace("\\-", "-").replace("\\(dq", '"').replace("\\e", "\\")


def man_entries(text):
    """[(section, [option names], paragraph)] of the .TP entries."""
    entries, section, lines = [], None, text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(".SS ") or line.startswith(".SH "):
            section = unroff(line[4:]).strip('"')
        if line == ".TP" and i + 1 < len(lines):
            tag = unroff(lines[i + 1])
            names = re.findall(r"(?<![\w-])--([a-z][a-z-]*)", tag)
            para = []
            for l in lines[i + 2:]:
                if l.startswith((".TP", ".SS", ".SH")):
                    break
                para.append(unroff(l))
            if names:
                entries.append((section, names, " ".join(para)))
    return entries


@test
def fanoutd_man_page_matches_help():
    want = help_options(fanoutd_help())
    man = read("docs/man/fanoutd.8")
    got = {}
    for _, names, para in man_entries(man):
        got.setdefault(names[0], para)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise Fail("fanoutd.8 lacks %s; has %s that --help does not" % (missing, extra))
    for name, meta in want.items():
        if meta is None:
            continue
        default, env, reload = meta
        para = got[name]
        d = re.search(r"Default (.*?)(?: \(range [^)]*\))?; environment (FANOUT_[A-Z_]+)", para)
        if not d:
            raise Fail("fanoutd.8: --%s has no \"Default X; environment FANOUT_Y\"" % name)
        if d.group(1) != default or d.group(2) != env:
            raise Fail("fanoutd.8: --%s says default %s, %s; --help says %s, %s" %
                       (name, d.group(1), d.group(2), default, env))
        if ("reloaded on SIGHUP" in para) != reload:
            raise Fail("fanoutd.8: --%s: the reload mark differs from --help" % name)


@test
def fanout_man_page_matches_help():
    man = read("docs/man/fanout.1")
    sections = {}
    for section, names, _ in man_entries(man):
        m = re.match(r"fanout (\w+)", section or "")
        if m:
            sections.setdefault(m.group(1), set()).update(names)
    for cmd in ("pub", "sub", "bench", "stats", "request", "reply"):
        rc, out, _ = run(os.path.join(build_dir(), "fanout"), cmd, "--help")
        assert rc == 0, "fanout %s --help exit %d" % (cmd, rc)
        want = set(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z-]*)", out, re.M))
        got = sections.get(cmd, set())
        if want != got:
            raise Fail("fanout.1, fanout %s: lacks %s; has %s that --help does not" %
                       (cmd, sorted(want - got), sorted(got - want)))


@test
def man_pages_carry_the_version_and_render_cleanly():
    version = read("VERSION").strip()
    for page in ("docs/man/fanoutd.8", "docs/man/fanout.1"):
        th = re.search(r'^\.TH \S+ \d "[^"]*" "fanout ([^"]*)"', read(page), re.M)
        if not th or th.group(1) != version:
            raise Fail("%s: .TH says %s, VERSION %s" % (page, th and th.group(1), version))
    groff = shutil.which("groff")
    if not groff:
        raise Skip("no groff to render the pages")
    for page in ("docs/man/fanoutd.8", "docs/man/fanout.1"):
        r = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", os.path.join(ROOT, page)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode or r.stderr.strip():
            raise Fail("%s: groff says %s" % (page, r.stderr.strip()))


@test
def example_config_has_every_option_at_its_default():
    want = help_options(fanoutd_help())
    text = read("scripts/fanoutd.conf")
    seen = {}
    for line in text.splitlines():
        m = re.match(r"^#?([a-z][a-z-]*)\s+(\S.*)$", line)
        if m and m.group(1) in want:
            seen.setdefault(m.group(1), []).append(m.group(2).strip())
    for name, meta in want.items():
        if meta is None or name == "config":
            continue
        if name not in seen:
            raise Fail("scripts/fanoutd.conf has no line for %s" % name)
        if meta[0] != "none" and seen[name][0] != meta[0]:
            raise Fail("scripts/fanoutd.conf: %s %s, but the default is %s" %
                       (name, seen[name][0], meta[0]))
    extra = sorted(set(seen) - set(want))
    assert not extra, "scripts/fanoutd.conf has options --help does not: %s" % extra
    assert "config" not in seen, "config cannot be set in a file"
    fanoutd = os.path.join(build_dir(), "fanoutd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    for variant in ("as shipped", "every option uncommented"):
        body = text
        if variant != "as shipped":
            body = re.sub(r"^#([a-z][a-z-]*\s)", r"\1", text, flags=re.M)
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(body)
        try:
            r = subprocess.run([fanoutd, "--config", f.name, "--check-config"], env=env,
                               capture_output=True, text=True, timeout=30)
        finally:
            os.unlink(f.name)
        if r.returncode != 0 or "configuration OK" not in r.stdout:
            raise Fail("%s: --check-config exit %d: %s" % (variant, r.returncode, r.stderr.strip()))


def user_facing_texts():
    texts = {}
    for rel in ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=ROOT)) + \
            sorted(glob.glob("docs/man/*", root_dir=ROOT)) + ["scripts/fanoutd.conf"]:
        texts[rel] = read(rel)
    texts["fanoutd --help"] = fanoutd_help()
    for cmd in ("--help", "pub --help", "sub --help", "bench --help", "stats --help"):
        _, out, _ = run(os.path.join(build_dir(), "fanout"), *cmd.split())
        texts["fanout " + cmd] = out
    return texts


@test
def no_text_names_a_file_outside_the_tree():
    bad = []
    for where, text in user_facing_texts().items():
        for m in re.finditer(r"(?<![\w.])\.\./[\w./-]*\w", text):
            if os.path.exists(os.path.join(ROOT, where)):   # a file: relative to it
                path = os.path.normpath(os.path.join(ROOT, os.path.dirname(where), m.group(0)))
                if path.startswith(ROOT + os.sep) and os.path.exists(path):
                    continue
            bad.append("%s: %s" % (where, m.group(0)))
        for m in re.finditer(r"\bDESIGN\.md\b|\bpeerbench\.c\b|\brelaybound\.c\b", text):
            bad.append("%s: %s" % (where, m.group(0)))
    if bad:
        raise Fail("paths a clone does not have: " + "; ".join(bad))


@test
def markdown_links_point_into_the_tree():
    bad = []
    for rel in ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=ROOT)):
        for m in re.finditer(r"\]\(([^)#\s]+)(#[^)]*)?\)", read(rel)):
            target = m.group(1)
            if re.match(r"^[a-z]+://", target):
                continue
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(rel), target))
            if not path.startswith(ROOT + os.sep) or not os.path.exists(path):
                bad.append("%s -> %s" % (rel, target))
    if bad:
        raise Fail("links to nothing: " + "; ".join(bad))


@test
def cluster_manifests_parse_and_keep_the_design():
    """docker/stack.yml (run by make swarm-test) and docker/k8s/ (untested
    here: no cluster) load as YAML and keep what docs/CLUSTER.md relies on."""
    try:
        import yaml
    except ImportError:
        raise Skip("python3-yaml is not installed")
    stack = yaml.safe_load(read("docker/stack.yml"))
    b = stack["services"]["broker"]
    env = b["environment"]
    if env.get("FANOUT_NODE_ID") != "broker-{{.Task.Slot}}":
        raise Fail("docker/stack.yml: FANOUT_NODE_ID is not the task slot")
    if env.get("FANOUT_CLUSTER_PEERS") != "dns:tasks.broker:7402":
        raise Fail("docker/stack.yml: the peers are not tasks.broker")
    if b["deploy"].get("endpoint_mode") != "dnsrr":
        raise Fail("docker/stack.yml: endpoint_mode is not dnsrr")
    docs = [d for d in yaml.safe_load_all(read("docker/k8s/fanout.yaml")) if d]
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    peers = kinds.get(("Service", "fanout-peers"))
    sts = kinds.get(("StatefulSet", "fanout"))
    if not peers or peers["spec"].get("clusterIP") != "None" or not peers["spec"].get("publishNotReadyAddresses"):
        raise Fail("docker/k8s/fanout.yaml: no headless fanout-peers publishing not-ready addresses")
    if not sts or sts["spec"].get("serviceName") != "fanout-peers":
        raise Fail("docker/k8s/fanout.yaml: the StatefulSet is not governed by fanout-peers")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    kenv = {e["name"]: e.get("value") for e in c["env"]}
    if kenv.get("FANOUT_NODE_ID") != "$(POD_NAME)" or "fanout-peers" not in (kenv.get("FANOUT_CLUSTER_PEERS") or ""):
        raise Fail("docker/k8s/fanout.yaml: node id or peers differ from docs/CLUSTER.md")
    if c["readinessProbe"]["httpGet"]["path"] != "/healthz":
        raise Fail("docker/k8s/fanout.yaml: readiness is not /healthz")


if __name__ == "__main__":
    main()
