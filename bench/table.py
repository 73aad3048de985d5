#!/usr/bin/env python3
"""One Markdown table from the logs bench/all.sh keeps (OUT_DIR/NAME.log).

    python3 bench/table.py OUT_DIR

Each row: what was measured, the edge's figure, the peer's figure from the same
run, their ratio, the target and whether it was met. A log that is missing or
that lacks a line gives "not measured" in its row, never a made-up figure.
"""
import os
import re
import sys

KV = re.compile(r"([A-Za-z_][\w+]*)=([^\s()]+)")


def lines(out, name):
    try:
        with open(os.path.join(out, name + ".log")) as f:
            return f.read().splitlines()
    except OSError:
        return []


def kv(line):
    return dict(KV.findall(line))


def rows_of(ls, first_word):
    """key=value dicts of the lines that start with `first_word`."""
    return [kv(l) | {"_line": l} for l in ls if l.split(" ", 1)[0] == first_word]


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt(x, digits=0, unit=""):
    if x is None:
        return "not measured"
    return f"{x:,.{digits}f}{unit}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.{digits}f}×"


def verdict(ok):
    return "—" if ok is None else ("met" if ok else "**not met**")


def command(ls):
    return ls[0][2:] if ls and ls[0].startswith("$ ") else "not run"


TABLE = []


def row(what, edge, peer, rat, target, ok, cmd):
    TABLE.append((what, edge, peer, rat, target, verdict(ok), f"`{cmd}`"))


def steps(ls, sut, unit_key):
    """(rate, ok, failed, cpu_s) for each step of `sut` in a step log."""
    out = []
    for r in rows_of(ls, sut):
        rate = num(r.get("rate"))
        if rate is None:
            continue
        out.append((rate, num(r.get("successful")), num(r.get("failed")), num(r.get(unit_key))))
    return out


def clean(steps_, per_step):
    """Highest rate whose step had no failure and all its calls."""
    best = 0
    for rate, ok, failed, _ in steps_:
        if failed == 0 and ok == rate * per_step:
            best = max(best, rate)
    return best


def step_seconds(ls, default=10):
    m = re.search(r"(\d+)s per step", "\n".join(ls))
    return int(m.group(1)) if m else default


def cps(out):
    ls = lines(out, "cps")
    sec = step_seconds(ls)
    e, k = steps(ls, "edge", "sut_cpu_s"), steps(ls, "kamailio", "sut_cpu_s")
    ce, ck = clean(e, sec), clean(k, sec)
    row("SIP calls/s with zero failures (SIPp uac → SUT → SIPp uas)",
        fmt(ce) if e else "not measured", f"Kamailio {fmt(ck)}" if k else "not measured",
        ratio(ce, ck) if ck else "—", "≥ 5000/s", (ce >= 5000) if e else None, command(ls))
    # CPU per call at the lowest step both ran (both clean or close to it).
    common = sorted(set(s[0] for s in e) & set(s[0] for s in k))
    if common:
        rate = common[0]
        pe = next(s for s in e if s[0] == rate)
        pk = next(s for s in k if s[0] == rate)
        ue = pe[3] * 1e6 / (rate * sec) if pe[3] is not None else None
        uk = pk[3] * 1e6 / (rate * sec) if pk[3] is not None else None
        row(f"CPU per call at {rate:.0f} calls/s", fmt(ue, 0, " µs"), f"Kamailio {fmt(uk, 0, ' µs')}",
            ratio(ue, uk), "≤ 0.5× Kamailio", (ue / uk <= 0.5) if ue and uk else None, command(ls))


def generator(out):
    ls = lines(out, "generator")
    sec = step_seconds(ls)
    l, s = steps(ls, "loadtest", "generator_cpu_s"), steps(ls, "sipp", "generator_cpu_s")
    cl, cs = clean(l, sec), clean(s, sec)
    row("generator: zero-failure calls/s against one SIPp uas", fmt(cl) if l else "not measured",
        f"SIPp uac {fmt(cs)}" if s else "not measured", ratio(cl, cs) if cs else "—",
        "≥ 1.5× SIPp", (cl >= 1.5 * cs) if l and s and cs else None, command(ls))
    if l and s:
        rate = min(l[0][0], s[0][0])
        pl = next((x for x in l if x[0] == rate), None)
        ps = next((x for x in s if x[0] == rate), None)
        ul = pl[3] * 1e6 / (rate * sec) if pl and pl[3] is not None else None
        us = ps[3] * 1e6 / (rate * sec) if ps and ps[3] is not None else None
        row(f"generator CPU per call at {rate:.0f} calls/s", fmt(ul, 0, " µs"), f"SIPp {fmt(us, 0, ' µs')}",
            ratio(ul, us), "≤ 0.5× SIPp", (ul / us <= 0.5) if ul and us else None, command(ls))


def register(out):
    ls = lines(out, "register")
    e = [(num(r.get("rate")), r) for r in rows_of(ls, "edge") if "rate" in r]
    k = [(num(r.get("rate")), r) for r in rows_of(ls, "kamailio") if "rate" in r]

    def best(xs):
        return max([rate for rate, r in xs if r.get("failed") == "0"], default=0)

    row("authenticated registrations/s with zero failures", fmt(best(e)) if e else "not measured",
        f"Kamailio {fmt(best(k))}" if k else "not measured", ratio(best(e), best(k)) if k and best(k) else "—",
        "≥ 5000/s and ≥ Kamailio", (best(e) >= 5000 and best(e) >= best(k)) if e and k else None, command(ls))
    if e and k:
        rate = min(e[0][0], k[0][0])
        ue = num(next((r for x, r in e if x == rate), {}).get("cpu_per_registration_us"))
        uk = num(next((r for x, r in k if x == rate), {}).get("cpu_per_registration_us"))
        row(f"CPU per registration at {rate:.0f}/s", fmt(ue, 0, " µs"), f"Kamailio {fmt(uk, 0, ' µs')}",
            ratio(ue, uk), "≤ Kamailio", (ue <= uk) if ue and uk else None, command(ls))
    m = next((re.search(r"= (\d+) bytes per registration", l) for l in ls if "bytes per registration" in l), None)
    b = num(m.group(1)) if m else None
    row("memory per registered agent (RSS growth / agents)", fmt(b, 0, " B"), "—", "—", "≤ 2048 B",
        (b <= 2048) if b is not None else None, command(ls))


def pair(out, name, first, second):
    """The log's lines, and the first step of two systems compared in it."""
    ls = lines(out, name)
    return ls, next(iter(rows_of(ls, first)), {}), next(iter(rows_of(ls, second)), {})


def relay(out):
    ls, e, r = pair(out, "relay", "edge", "rtpengine")
    n = e.get("concurrent", "?")
    ce, cr = num(e.get("media_cores")), num(r.get("media_cores"))
    loss = [num(x.get(k)) for x in (e,) for k in ("loss_to_caller_pct", "loss_to_callee_pct")]
    lr = [num(r.get(k)) for k in ("loss_to_caller_pct", "loss_to_callee_pct")]
    row(f"RTP relay, {n} concurrent G.711 calls: cores (loss each way)",
        f"{fmt(ce, 3)} ({fmt(loss[0], 3)} / {fmt(loss[1], 3)} %)" if e else "not measured",
        f"rtpengine {fmt(cr, 3)} ({fmt(lr[0], 3)} / {fmt(lr[1], 3)} %)" if r else "not measured",
        ratio(ce, cr), "≤ 0.5× rtpengine", (ce / cr <= 0.5) if ce and cr else None, command(ls))
    row(f"memory per relayed call ({n} calls)", fmt(num(e.get("rss_kb_per_call")), 1, " KB"), "—", "—", "—", None, command(ls))
    return ce, num(n) if n != "?" else None


def supervision(out, plain):
    ls = lines(out, "supervision")
    s = next(iter(rows_of(ls, "edge")), {})
    n = num(s.get("concurrent"))
    losses = [num(s.get(k)) for k in ("loss_to_caller_pct", "loss_to_agent_pct", "loss_to_supervisor_pct")]
    worst = max([x for x in losses if x is not None], default=None)
    cs = num(s.get("edge_cores"))
    pc, pn = plain
    per = cs / n if cs and n else None
    plain_per = pc / pn if pc and pn else None
    row(f"supervised + recorded calls, {fmt(n) if n else '?'} concurrent: loss caller / agent / supervisor",
        " / ".join(fmt(x, 3, " %") for x in losses) if s else "not measured", "—", "—", "< 0.1 % each",
        (worst < 0.1) if worst is not None else None, command(ls))
    row("cores per supervised + recorded call vs a plain relayed call (relay row)",
        fmt(per * 1e3 if per else None, 3, " m"), f"plain {fmt(plain_per * 1e3 if plain_per else None, 3, ' m')}",
        ratio(per, plain_per), "—", None, command(ls))
    row("memory per supervised + recorded call", fmt(num(s.get("rss_kb_per_call")), 1, " KB"), "—", "—", "—", None, command(ls))


def webrtc(out):
    ls, w, p = pair(out, "webrtc", "webrtc", "plain")
    n = w.get("concurrent", "?")
    lt, la = num(w.get("loss_to_trunk_pct")), num(w.get("loss_to_agent_pct"))
    row(f"trunk ↔ WebRTC calls, {n} concurrent: loss to trunk / agent",
        f"{fmt(lt, 3)} / {fmt(la, 3)} % (answered {w.get('answered', '?')}, failed {w.get('failed', '?')})" if w else "not measured",
        "—", "—", "< 0.1 % each way", (lt < 0.1 and la < 0.1) if lt is not None and la is not None else None, command(ls))
    cw, cp = num(w.get("edge_cores")), num(p.get("edge_cores"))
    row(f"edge cores, {n} WebRTC calls vs the same plain calls", fmt(cw, 3), f"plain {fmt(cp, 3)}", ratio(cw, cp), "—", None, command(ls))


def cpu_seconds(t):
    """ps cputime [[dd-]hh:]mm:ss → seconds."""
    if not t:
        return None
    days = 0
    if "-" in t:
        d, t = t.split("-", 1)
        days = int(d)
    parts = [int(x) for x in t.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def chat(out):
    ls = lines(out, "chat")
    runs = {}
    cur = None
    for l in ls:
        m = re.match(r"server: (\w+)", l)
        if m:
            cur = runs.setdefault(m.group(1), {})
            continue
        m = re.match(r"(edge|nats) CPU: (\S+)", l)
        if m:
            runs.setdefault(m.group(1), {})["cpu"] = cpu_seconds(m.group(2))
            continue
        if cur is None:
            continue
        m = re.search(r"deliveries: (\d+) = (\d+)/s\s+latency p50 ([\d.]+) ms\s+p99 ([\d.]+) ms", l)
        if m:
            cur.update(deliveries=int(m.group(1)), rate=int(m.group(2)), p50=float(m.group(3)), p99=float(m.group(4)))
        m = re.search(r"loadtest CPU: ([\d.]+) s user \+ ([\d.]+) s sys", l)
        if m:
            cur["gen_cpu"] = float(m.group(1)) + float(m.group(2))
        m = re.search(r"sent: (\d+) messages", l)
        if m:
            cur["sent"] = int(m.group(1))
        m = re.search(r"= ([\d.]+) KiB per connection", l)
        if m:
            cur["kib"] = float(m.group(1))
        m = re.search(r"lost: (\d+)\s+duplicated or out of order: (\d+)", l)
        if m:
            cur.update(lost=int(m.group(1)), dup=int(m.group(2)))
    e, n = runs.get("edge", {}), runs.get("nats", {})
    cmd = command(ls)
    row("chat fan-out, 10 000 connections: deliveries/s, p50 / p99",
        f"{fmt(e.get('rate'))}/s, {fmt(e.get('p50'), 2)} / {fmt(e.get('p99'), 1)} ms (lost {e.get('lost', '?')}, dup/reordered {e.get('dup', '?')})" if e else "not measured",
        f"NATS {fmt(n.get('rate'))}/s, {fmt(n.get('p50'), 2)} / {fmt(n.get('p99'), 1)} ms" if n else "not measured",
        ratio(e.get("p99"), n.get("p99")), "p99 ≤ NATS's", (e["p99"] <= n["p99"]) if "p99" in e and "p99" in n else None, cmd)
    pe = e["cpu"] * 1e6 / e["deliveries"] if e.get("cpu") is not None and e.get("deliveries") else None
    pn = n["cpu"] * 1e6 / n["deliveries"] if n.get("cpu") is not None and n.get("deliveries") else None
    row("chat CPU per delivery (server process, whole run incl. setup)", fmt(pe, 1, " µs"), f"NATS {fmt(pn, 1, ' µs')}",
        ratio(pe, pn), "≤ 0.5× NATS", (pe / pn <= 0.5) if pe and pn else None, cmd)
    ge = e["gen_cpu"] * 1e6 / e["sent"] if e.get("gen_cpu") is not None and e.get("sent") else None
    row("loadtest chat's own CPU per message sent (4 deliveries each; whole run incl. setup)", fmt(ge, 1, " µs"), "—", "—", "—", None, cmd)
    row("memory per idle chat connection", fmt(e.get("kib"), 1, " KiB"), f"NATS {fmt(n.get('kib'), 1, ' KiB')}",
        ratio(e.get("kib"), n.get("kib")), "≤ 16 KiB", (e["kib"] <= 16) if "kib" in e else None, cmd)


def upload(out):
    ls = lines(out, "upload")
    for name in ("http", "s3"):
        l = next((x for x in ls if x.startswith(name + ": upload")), None)
        m = l and re.search(r"upload ([\d.]+) MB/s .*plain copy ([\d.]+) MB/s .*ratio ([\d.]+); edge CPU ([\d.]+) s/GB", l)
        u, p, r, c = (float(m.group(i)) for i in range(1, 5)) if m else (None,) * 4
        h = l and re.search(r"peak RSS ([\d.]+) MB", l)
        peer = "curl -T to the same sink" if name == "http" else "curl multipart, same parts, same server"
        row(f"recording upload of 500 MB, {name} target", f"{fmt(u, 0)} MB/s ({fmt(c, 2)} CPU-s/GB, peak RSS {h.group(1) if h else '?'} MB)",
            f"{peer}: {fmt(p, 0)} MB/s", f"{r:.2f}×" if r is not None else "—", "≥ 0.8× plain", (r >= 0.8) if r is not None else None, command(ls))


def transfer(out):
    ls = lines(out, "transfer")
    for l in ls:
        f = l.split()
        if len(f) == 9 and f[0].isdigit():
            rate, asked, done, failed, p50, p99, cfail, cpu, per = f
            row(f"blind transfers at {rate}/s", f"{done} of {asked} completed, {failed} failed, {cfail} failed calls; REFER → final NOTIFY p99 {fmt(num(p99), 1)} ms; {per} µs CPU each",
                "—", "—", "≥ 500/s, zero failures", done == asked and failed == "0" and cfail == "0" and int(rate) >= 500, command(ls))


def conference(out):
    ls = lines(out, "conference")
    c = next(iter(rows_of(ls, "edge")), {})
    losses = [num(c.get(k)) for k in ("loss_customer_pct", "loss_agent_pct", "loss_members_pct")]
    worst = max([x for x in losses if x is not None], default=None)
    row(f"five-party conferences, {c.get('conferences', '?')} concurrent: loss customer / agent / members",
        " / ".join(fmt(x, 3, " %") for x in losses) + f"; {fmt(num(c.get('edge_cores')), 2)} cores" if c else "not measured",
        "—", "—", "< 0.1 % each", (worst < 0.1) if worst is not None else None, command(ls))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    cps(out)
    generator(out)
    register(out)
    plain = relay(out)
    supervision(out, plain)
    webrtc(out)
    chat(out)
    upload(out)
    transfer(out)
    conference(out)
    total = next((l for l in lines(out, "total")), "")
    print(f"Measured {os.path.basename(os.path.abspath(out))} on {os.cpu_count()} cores ({total}).\n")
    print("| what | edge | peer, same run | ratio | target | |  command |")
    print("|---|---|---|---|---|---|---|")
    for r in TABLE:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
