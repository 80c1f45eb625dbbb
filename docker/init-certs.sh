#!/bin/sh
# init-certs.sh -- the compose stack's secrets, made at its first start.
#
# Installed in the image as /usr/local/bin/fanout-init-certs; compose.yml
# runs it in the broker container before fanoutd ("fanout-init-certs
# fanoutd": it ends by exec'ing its arguments). With openssl and
# `fanoutd --hash-password` it writes, once (a volume that has them is left
# alone, so a restart keeps the certificates and passwords):
#
#   $FANOUT_SECRETS_DIR (the broker's volume, default /var/lib/fanout/secrets)
#     ca.key                the stack's CA key (never leaves this volume)
#     server.pem/.key       the broker's certificate: CN and DNS SAN
#                           $FANOUT_CERT_NAME (default "broker", the
#                           service name the other containers dial), plus
#                           localhost and 127.0.0.1 for the host's
#                           published port
#     users                 the users file (fanoutd --users): producer
#                           may publish demo.>, consumer may read demo.>
#                           and use multicast, bench may do both on bench.>
#   $FANOUT_CLIENT_DIR (the clients' volume, default /var/lib/fanout/client)
#     ca.pem                the CA certificate to trust (--tls-ca)
#     NAME.password         each user's password, for the clients
#
# Passwords come from FANOUT_DEMO_PRODUCER_PASSWORD,
# FANOUT_DEMO_CONSUMER_PASSWORD and FANOUT_DEMO_BENCH_PASSWORD, or are
# generated (openssl rand) and printed once, on this first start, in the
# broker's log ("init-certs: password of consumer: ..."). Not FANOUT_USER
# or FANOUT_PASSWORD: those are fanoutd's own --user/--password.
set -eu
secrets=${FANOUT_SECRETS_DIR:-/var/lib/fanout/secrets}
client=${FANOUT_CLIENT_DIR:-/var/lib/fanout/client}
name=${FANOUT_CERT_NAME:-broker}
say() { echo "init-certs: $*" >&2; }

make_all() {
    umask 077
    mkdir -p "$secrets" "$client"
    tmp=$(mktemp -d "$secrets/.new.XXXXXX")
    cd "$tmp"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 3650 -subj "/CN=fanout compose CA" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj "/CN=$name" 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 825 -extfile server.ext 2>/dev/null
    rm -f server.csr server.ext ca.srl
    for u in producer consumer bench; do
        var=FANOUT_DEMO_$(echo "$u" | tr a-z A-Z)_PASSWORD
        eval "pw=\${$var:-}"
        if [ -z "$pw" ]; then
            pw=$(openssl rand -hex 16)
            say "password of $u: $pw (generated; also in $client/$u.password)"
        fi
        printf '%s\n' "$pw" >"$u.password"
        printf 'user %s password %s\n' "$u" "$(printf '%s\n' "$pw" | fanoutd --hash-password)" >>users
    done
    cat >>users <<'EOF'
user producer publish   allow demo.>
user consumer subscribe allow demo.>
user consumer allow multicast
user bench    publish   allow bench.>
user bench    subscribe allow bench.>
EOF
    chmod 644 ca.pem
    chmod 600 ./*.password ca.key server.key users
    # the clients' volume first, the broker's last: the users file is what
    # says "done"
    for f in ca.pem producer.password consumer.password bench.password; do
        cp -p "$f" "$client/.$f.new" && mv "$client/.$f.new" "$client/$f"
    done
    mv ca.key server.pem server.key "$secrets/"
    mv users "$secrets/users"
    cd / && rm -rf "$tmp"
    say "made a CA, a certificate for '$name' and the users producer, consumer, bench"
}

if [ -s "$secrets/users" ] && [ -s "$secrets/server.pem" ] && [ -s "$client/ca.pem" ]; then
    say "$secrets already holds the certificates and users: kept"
else
    make_all
fi
[ "$#" -eq 0 ] || exec "$@"
