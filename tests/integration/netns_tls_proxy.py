#!/usr/bin/python3
"""netns_tls_proxy.py LISTEN_PORT BROKER_HOST BROKER_PORT CERT READY_FILE

A plain-TCP to TLS forwarder for netns_mcast.sh: listens on 127.0.0.1:
LISTEN_PORT and carries every connection to BROKER_HOST:BROKER_PORT over
TLS (verified against CERT, the broker's self-signed certificate). libfanout
speaks plain TCP only, so a subscriber in another namespace reaches the
broker's TLS listener through this: the broker sees a TLS connection, which
is what entitles it to the multicast group keys. Writes READY_FILE once it
listens; runs until killed.
"""
import select
import socket
import ssl
import sys
import threading


def serve(conn, host, port, ctx):
    """One connection, in one thread: an SSL object must not be read and
    written from two threads at once."""
    try:
        up = ctx.wrap_socket(socket.create_connection((host, port), timeout=5), server_hostname=host)
        up.settimeout(None)
    except OSError as e:
        print("proxy: cannot reach %s:%d over TLS: %s" % (host, port, e), file=sys.stderr)
        conn.close()
        return
    try:
        while True:
            r, _, _ = select.select([conn, up], [], [])
            if conn in r:
                b = conn.recv(65536)
                if not b:
                    break
                up.sendall(b)
            if up in r:
                b = up.recv(65536)          # a whole record (blocks for the rest of one)
                if not b:
                    break
                while up.pending():
                    b += up.recv(up.pending())
                conn.sendall(b)
    except OSError:
        pass
    for s in (conn, up):
        try:
            s.close()
        except OSError:
            pass


def main():
    lport, host, port, cert, ready = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False          # the certificate itself is the trust anchor
    ctx.load_verify_locations(cert)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", lport))
    ls.listen(16)
    open(ready, "w").close()
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn, host, port, ctx), daemon=True).start()


if __name__ == "__main__":
    main()
