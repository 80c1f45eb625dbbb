#!/bin/sh
# mkbase.sh -- make sure the base image debian:bookworm-slim exists locally.
#
# docker/Dockerfile starts FROM debian:bookworm-slim. Where a registry can be
# reached, `docker pull` gets it as usual. Where none can (an offline build
# host that still reaches a Debian package mirror), this script builds an
# equivalent image itself: `debootstrap --variant=minbase bookworm` into a
# temporary directory, trimmed like the official slim image, then
# `tar | docker import`. It is a no-op when the image is already there.
#
# The mirror is not written down anywhere: it is read at run time from this
# machine's apt sources (/etc/apt/sources.list and sources.list.d/*.list or
# *.sources, the first bookworm entry), or taken from FO_DEBIAN_MIRROR.
#
# Usage: sh docker/mkbase.sh            (as root: debootstrap needs it)
# Env:   FO_BASE_IMAGE (default debian:bookworm-slim), FO_DEBIAN_MIRROR,
#        FO_SKIP_PULL=1 (do not try the registry first), DOCKER (client).
set -eu
IMAGE=${FO_BASE_IMAGE:-debian:bookworm-slim}
SUITE=bookworm
DOCKER=${DOCKER:-docker}

say() { echo "mkbase: $*" >&2; }

if $DOCKER image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE is present"
    exit 0
fi

if [ "${FO_SKIP_PULL:-0}" != 1 ]; then
    say "trying docker pull $IMAGE"
    if timeout 300 "$DOCKER" pull "$IMAGE" >/dev/null 2>&1; then
        say "pulled $IMAGE"
        exit 0
    fi
    say "cannot pull $IMAGE: building it with debootstrap"
fi

# The first deb822 (*.sources) or one-line (*.list) entry for $SUITE.
find_mirror() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # Stanzas are separated by blank lines; take URIs of a stanza whose
        # Types has deb and whose Suites has exactly $SUITE.
        awk -v suite="$SUITE" '
            function flush() {
                if (deb && hassuite && uri != "") { print uri; found = 1; exit }
                deb = 0; hassuite = 0; uri = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            tolower($1) == "types:"  { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hassuite = 1 }
            tolower($1) == "uris:"   { uri = $2 }
            END { if (!found) flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        awk -v suite="$SUITE" '
            $1 != "deb" { next }
            { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } }
            $(i + 1) == suite { print $i; exit }
        ' "$f"
    done
}

MIRROR=${FO_DEBIAN_MIRROR:-$(find_mirror | head -n 1)}
if [ -z "$MIRROR" ]; then
    say "no $SUITE mirror found in /etc/apt/sources.list*; set FO_DEBIAN_MIRROR"
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "debootstrap is missing: sudo apt-get install -y debootstrap"
        exit 1
    fi
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y -qq --no-install-recommends debootstrap >&2
fi

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/fo-rootfs.XXXXXX")
cleanup() { rm -rf "$ROOT"; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

say "debootstrap $SUITE from $MIRROR"
if ! debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1; then
    tail -20 "$ROOT.log" >&2
    rm -f "$ROOT.log"
    exit 1
fi
rm -f "$ROOT.log"

# Trim as the official slim image does: no package lists, caches, docs,
# man pages or locales; apt told to keep it that way.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
       "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/log/*.log \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* \
       "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/*
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
EOF
# Copy apt settings that make this host's mirror usable (proxies, snapshot
# date checks), so `apt-get` inside `docker build` behaves as on the host.
for f in /etc/apt/apt.conf.d/*; do
    [ -f "$f" ] || continue
    if grep -qiE 'proxy|Check-Valid-Until|Check-Date' "$f"; then
        cp "$f" "$ROOT/etc/apt/apt.conf.d/"
    fi
done

say "importing $IMAGE"
tar -C "$ROOT" -c . | $DOCKER import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
say "made $IMAGE"
