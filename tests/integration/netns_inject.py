#!/usr/bin/python3
"""netns_inject.py -- the attacker of netns_mcast.sh: a host on the segment
without the group key.

  netns_inject.py capture GROUP PORT IFADDR DIR COUNT
      join GROUP:PORT on IFADDR, create DIR/ready (joined), save the
      first COUNT datagrams as DIR/d0, DIR/d1, ... and then create DIR/done
  netns_inject.py send GROUP PORT IFADDR DIR TOPIC SEQ
      send, to the group, from IFADDR:
        - every saved datagram again, verbatim          (replays)
        - the first one cut short by 1, 9 and 27 bytes  (truncated)
        - the first one with one payload byte changed   (forged)
        - 5 datagrams of the broker's epoch (taken from a saved one) with
          messages TOPIC SEQ.. and payload "forged", a made-up dseq and tag
        - one of a newer epoch, as a restarted broker would send (once
          enough to silence a receiver for good)
      and print: replays R tampered T foreign 1
      (T = truncated + changed + made up: each must count as bad or forged)
"""
import os
import socket
import struct
import sys


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def read_varint(b, i):
    v, shift = 0, 0
    while True:
        c = b[i]
        v |= (c & 0x7F) << shift
        i += 1
        if c < 0x80:
            return v, i
        shift += 7


def field(key, payload):
    return bytes([key]) + varint(len(payload)) + payload


def datagram(epoch, topic, seq, payload, dseq):
    msg = field(0x0A, topic.encode()) + b"\x10" + varint(seq) + field(0x1A, payload)
    return (b"\x08" + varint(epoch) + field(0x12, msg) + b"\x19" + struct.pack("<Q", dseq) +
            b"\x22\x10" + os.urandom(16))


def sock(group, port, ifaddr, join):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if join:
        s.bind((group, port))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton(group) + socket.inet_aton(ifaddr))
    else:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    return s


def capture(group, port, ifaddr, d, count):
    s = sock(group, port, ifaddr, True)
    open(os.path.join(d, "ready"), "w").close()
    for i in range(count):
        with open(os.path.join(d, "d%d" % i), "wb") as f:
            f.write(s.recv(70000))
    open(os.path.join(d, "done"), "w").close()


def send(group, port, ifaddr, d, topic, seq):
    saved = []
    i = 0
    while os.path.exists(os.path.join(d, "d%d" % i)):
        with open(os.path.join(d, "d%d" % i), "rb") as f:
            saved.append(f.read())
        i += 1
    if not saved:
        sys.exit("netns_inject: nothing captured in %s" % d)
    s = sock(group, port, ifaddr, False)
    dst = (group, port)
    first = saved[0]
    epoch, _ = read_varint(first, 1)
    for b in saved:
        s.sendto(b, dst)
    tampered = 0
    for cut in (1, 9, 27):
        s.sendto(first[:-cut], dst)
        tampered += 1
    changed = bytearray(first)
    changed[len(changed) - 28] ^= 0x20          # the last byte before the trailer
    s.sendto(bytes(changed), dst)
    tampered += 1
    for k in range(5):
        s.sendto(datagram(epoch, topic, seq + k, b"forged", 1 << 48 | 10 ** 6 + k), dst)
        tampered += 1
    s.sendto(datagram(epoch + 10 ** 9, topic, seq, b"forged", 1), dst)
    print("replays %d tampered %d foreign 1" % (len(saved), tampered))


def main():
    a = sys.argv
    if len(a) == 7 and a[1] == "capture":
        capture(a[2], int(a[3]), a[4], a[5], int(a[6]))
    elif len(a) == 8 and a[1] == "send":
        send(a[2], int(a[3]), a[4], a[5], a[6], int(a[7]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
