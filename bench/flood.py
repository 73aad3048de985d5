#!/usr/bin/env python3
"""Floods against a running edge, with its peak RSS and the HTTP API's latency
measured during each. Used by bench/flood.sh; prints one JSON line per flood.

  flood.py EDGE_PID SIP_HOST:PORT HTTP_HOST:PORT KIND SECONDS [N]

KIND: strangers (N INVITE/s over UDP from a source that is no trunk),
      tcp_idle (N idle SIP TCP connections from one address),
      http_slow (N HTTP connections sending headers one byte per second),
      watch (no traffic of its own: only the measurements, while another
      program loads the edge; used by bench/overload.sh).
"""
import json, socket, sys, threading, time

pid, sip, http, kind, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
n = int(sys.argv[6]) if len(sys.argv) > 6 else 1000
sh, sp = sip.rsplit(":", 1); sip = (sh, int(sp))
hh, hp = http.rsplit(":", 1); http = (hh, int(hp))

def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0

def metric(name):
    s = socket.create_connection(http, timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    total = 0.0
    for line in data.decode(errors="replace").splitlines():
        if line.startswith(name) and not line.startswith("#"):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total

stop = threading.Event()
lat = []
peak = [rss_kb()]
rss0 = peak[0]

def prober():
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            s = socket.create_connection(http, timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n")
            s.recv(4096)
            s.close()
            lat.append((time.monotonic() - t0) * 1000)
        except OSError:
            lat.append(5000.0)
        peak[0] = max(peak[0], rss_kb())
        time.sleep(0.05)

def strangers():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.setblocking(False)
    local = s.getsockname()
    i, got = 0, 0
    t_end = time.monotonic() + secs
    next_t = time.monotonic()
    while time.monotonic() < t_end:
        for _ in range(max(1, n // 100)):
            i += 1
            msg = (f"INVITE sip:service@{sip[0]} SIP/2.0\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bKfl{i}\r\n"
                   f"From: <sip:x@{local[0]}>;tag=f{i}\r\nTo: <sip:service@{sip[0]}>\r\nCall-ID: flood-{i}\r\n"
                   f"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
            try:
                s.sendto(msg, sip)
            except OSError:
                pass
        next_t += 0.01
        while True:
            try:
                s.recv(65536)
                got += 1
            except BlockingIOError:
                break
        d = next_t - time.monotonic()
        if d > 0:
            time.sleep(d)
    time.sleep(2)
    while True:
        try:
            s.recv(65536); got += 1
        except BlockingIOError:
            break
    return {"sent": i, "packets_back": got}

def tcp_idle():
    conns, refused = [], 0
    for _ in range(n):
        try:
            conns.append(socket.create_connection(sip, timeout=2))
        except OSError:
            refused += 1
    time.sleep(1)
    closed = 0
    for c in conns:
        c.setblocking(False)
        try:
            if c.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    held = len(conns) - closed
    time.sleep(max(0.0, secs - 1))
    for c in conns:
        c.close()
    return {"opened": n, "held_by_edge": held, "closed_by_edge": closed + refused}

def http_slow():
    conns = []
    for _ in range(n):
        try:
            c = socket.create_connection(http, timeout=2)
            c.sendall(b"G")
            conns.append(c)
        except OSError:
            pass
    t_end = time.monotonic() + secs
    line = b"ET /healthz HTTP/1.1\r\nX-Slow: "
    k = 0
    while time.monotonic() < t_end:
        for c in conns:
            try:
                c.sendall(line[k % len(line):k % len(line) + 1])
            except OSError:
                pass
        k += 1
        time.sleep(1)
    alive = 0
    for c in conns:
        c.setblocking(False)
        try:
            if c.recv(1) != b"":
                alive += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        c.close()
    return {"opened": len(conns), "still_open_after": alive}

def watch():
    time.sleep(secs)
    return {}

p = threading.Thread(target=prober)
p.start()
out0 = metric("edge_sip_responses_total{direction=\"out\"")
res = {"strangers": strangers, "tcp_idle": tcp_idle, "http_slow": http_slow, "watch": watch}[kind]()
stop.set(); p.join()
lat.sort()
q = lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))], 2) if lat else None
res.update({"flood": kind, "seconds": secs, "rss_before_mb": round(rss0 / 1024, 1),
            "rss_peak_mb": round(peak[0] / 1024, 1), "rss_after_mb": round(rss_kb() / 1024, 1),
            "api_p50_ms": q(0.5), "api_p99_ms": q(0.99), "api_probes": len(lat)})
if kind == "watch":
    res["edge_calls_shed_total"] = metric("edge_calls_shed_total")
    res["edge_calls_rejected_overload_total"] = metric("edge_calls_rejected_overload_total")
if kind == "strangers":
    res["edge_responses_out"] = metric("edge_sip_responses_total{direction=\"out\"") - out0
    res["edge_strangers_total"] = metric("edge_sip_strangers_total")
print(json.dumps(res))
