"""Ask one Kafka broker for its cluster metadata; exit 0 when it answers and lists the brokers.

    python3 deploy/kafka/metadata_probe.py 127.0.0.1:9092 [--nodes 1,2,3] [--timeout 2]

A Metadata request (API key 3, version 4: the oldest that Kafka 4.x still serves) asking for
no topics. The broker answers with the live brokers it knows; with ``--nodes`` every listed
node id must be among them (the deploy scripts wait for that, not for a fixed time). Prints the
node ids it saw. Standard library only: the deploy scripts run it before any venv exists.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

METADATA, VERSION, CORRELATION = 3, 4, 17
CLIENT_ID = b"podium-probe"


def request() -> bytes:
    """Header v1 (key, version, correlation id, client id) + body v4 (no topics, no creation)."""
    header = struct.pack(">hhih", METADATA, VERSION, CORRELATION, len(CLIENT_ID)) + CLIENT_ID
    body = struct.pack(">ib", 0, 0)
    message = header + body
    return struct.pack(">i", len(message)) + message


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def broker_ids(response: bytes) -> list[int]:
    """The node ids of the brokers array of a Metadata v4 response (after the size prefix)."""
    correlation, _throttle, count = struct.unpack_from(">iii", response, 0)
    if correlation != CORRELATION:
        raise ValueError(f"unexpected correlation id {correlation}")
    pos, ids = 12, []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", response, pos)
        pos += 6 + host_len + 4  # host, port
        (rack_len,) = struct.unpack_from(">h", response, pos)
        pos += 2 + max(rack_len, 0)
        ids.append(node_id)
    return sorted(ids)


def probe(host: str, port: int, timeout: float) -> list[int]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(request())
        (size,) = struct.unpack(">i", read_exactly(sock, 4))
        return broker_ids(read_exactly(sock, size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("address", help="host:port of the broker's PLAINTEXT listener")
    parser.add_argument("--nodes", default="", help="node ids that must be listed, e.g. 1,2,3")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    try:
        ids = probe(host, int(port), args.timeout)
    except (OSError, ValueError, struct.error) as exc:
        print(f"no metadata from {args.address}: {exc}", file=sys.stderr)
        return 1
    print(",".join(map(str, ids)))
    wanted = {int(n) for n in args.nodes.split(",") if n}
    return 0 if ids and wanted <= set(ids) else 1


if __name__ == "__main__":
    sys.exit(main())
