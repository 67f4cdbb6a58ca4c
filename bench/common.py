"""Shared helpers of the benchmarks under bench/: finding the tools, starting servers, reading
Prometheus histograms, sampling a process tree's CPU time and memory, printing tables.

Standard library only (python3 >= 3.9), so the benchmarks run wherever aibench builds.
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Missing(Exception):
    """A tool the benchmark needs is not installed; the message says how to get it."""


# ---------------------------------------------------------------------------------------------
# Tools


def aibench_bin():
    """The aibench binary: $AIBENCH, else the workspace's release build."""
    path = os.environ.get("AIBENCH") or os.path.join(REPO, "target", "release", "aibench")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise Missing(
            f"aibench binary not found at {path}: build it with "
            "`cargo build --release -p aibench`, or set AIBENCH=/path/to/aibench"
        )
    return path


def vllm_bin():
    """vLLM's command (`vllm bench serve`): $VLLM, else `vllm` on the PATH."""
    path = os.environ.get("VLLM") or shutil.which("vllm")
    if not path or not os.access(path, os.X_OK):
        raise Missing(
            "vLLM's client not found: install it with `pip install vllm` (a virtualenv is "
            "best; the client part runs without a GPU) and set VLLM=/path/to/venv/bin/vllm"
        )
    return path


def vllm_python(vllm):
    """The Python interpreter next to the `vllm` script (it has `tokenizers` and `transformers`)."""
    for name in ("python3", "python"):
        p = os.path.join(os.path.dirname(os.path.realpath(vllm)), name)
        if os.access(p, os.X_OK):
            return p
    p = os.path.join(os.path.dirname(vllm), "python3")
    if os.access(p, os.X_OK):
        return p
    raise Missing(f"no python next to {vllm}; set VLLM to the vllm script inside its venv")


def offline_env(extra=None):
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra or {})
    return env


def build_tokenizer(vllm, out_dir):
    """A local word-level tokenizer for vLLM's client (no network here)."""
    if os.path.isfile(os.path.join(out_dir, "tokenizer.json")):
        return out_dir
    subprocess.run(
        [vllm_python(vllm), os.path.join(BENCH_DIR, "make_tokenizer.py"), out_dir],
        check=True,
        env=offline_env(),
    )
    return out_dir


def build_floor(name, out_dir):
    """Compile bench/floor/NAME.c (a minimal C reference) into OUT_DIR; None without a C compiler."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print(f"note: no C compiler (apt-get install gcc): the C reference {name} is skipped",
              file=sys.stderr)
        return None
    out = os.path.join(out_dir, name)
    subprocess.run([cc, "-O2", "-o", out, os.path.join(BENCH_DIR, "floor", f"{name}.c")], check=True)
    return out


def floor_stream(binary, url, conc, requests, prompt_words=32, max_tokens=100, extra=None):
    """Run the minimal C streaming client; returns (result, rusage, sampler)."""
    host, port = url.rsplit("//", 1)[1].split(":")
    argv = [binary, host, port, str(conc), str(requests), str(prompt_words), str(max_tokens)]
    rc, out, err, ru, sampler = run_measured(argv, extra=extra)
    if rc != 0:
        raise RuntimeError(f"{os.path.basename(binary)} failed ({rc}): {err[-2000:]}")
    return json.loads(out), ru, sampler


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Servers


class Server:
    """A server process started in its own process group and stopped with SIGTERM."""

    def __init__(self, argv, port, ready_path="/", log=None, name="server"):
        self.port = port
        self.name = name
        self.log = log or tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited at start: {self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1):
                    break
            except Exception:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"{name} did not answer on port {port}: {self.tail()}")
                time.sleep(0.05)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def tail(self):
        try:
            self.log.seek(0)
            return self.log.read()[-2000:].decode(errors="replace")
        except Exception:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_sim(ttft="50ms", itl="10ms", extra=()):
    """`aibench sim` in fixed-timing mode on a free port."""
    port = free_port()
    argv = [aibench_bin(), "sim", "--port", str(port), "--fixed-ttft", ttft, "--fixed-itl", itl]
    return Server(argv + list(extra), port, ready_path="/health", name="aibench sim")


# ---------------------------------------------------------------------------------------------
# Prometheus text


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)')


def scrape(url, timeout=5):
    """Samples of a /metrics page: {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen(url + "/metrics", timeout=timeout) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return out


def metric(samples, name):
    """Sum of every sample of `name` (over labels)."""
    return sum(v for (n, _), v in samples.items() if n == name)


def histogram(samples, name):
    """Cumulative buckets [(le, count)] of histogram `name`, summed over other labels."""
    by_le = {}
    for (n, labels), v in samples.items():
        if n != name + "_bucket":
            continue
        le = dict(labels).get("le")
        bound = math.inf if le == "+Inf" else float(le)
        by_le[bound] = by_le.get(bound, 0.0) + v
    return sorted(by_le.items())


def histogram_delta(before, after, name):
    b = dict(histogram(before, name))
    return [(le, c - b.get(le, 0.0)) for le, c in histogram(after, name)]


def histogram_quantile(buckets, q):
    """Quantile of cumulative buckets, interpolated linearly inside a bucket (as Prometheus
    does). None when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lo_bound, lo_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lo_bound
            if count == lo_count:
                return le
            return lo_bound + (le - lo_bound) * (rank - lo_count) / (count - lo_count)
        lo_bound, lo_count = le, count
    return buckets[-1][0]


# ---------------------------------------------------------------------------------------------
# The wire: what the server actually sent, and when


class WireCapture:
    """tcpdump on the loopback interface, data segments to and from one port: the times at which
    requests reached the server and tokens left it, independent of any client's clock."""

    def __init__(self, port, path):
        tcpdump = shutil.which("tcpdump") or "/usr/sbin/tcpdump"
        if not os.access(tcpdump, os.X_OK):
            raise Missing("tcpdump not found (apt-get install tcpdump)")
        self.port, self.path = port, path
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [tcpdump, "-i", "lo", "-nn", "-s", "0", "-U", "-w", path,
             f"tcp port {port} and (tcp[tcpflags] & tcp-push != 0)"],
            stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.time() + 10
        while True:
            self.err.seek(0)
            if b"listening on" in self.err.read():
                break
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                self.err.seek(0)
                raise Missing(f"tcpdump could not capture: {self.err.read().decode(errors='replace')[-300:]}")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            time.sleep(0.2)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def timings(self):
        """Per request, as the wire saw it: TTFT (ms, request segment to first content event)
        and the gaps between content events (ms; 0 for events sharing a segment). Events
        with no choices (usage) and [DONE] are not content."""
        header = re.compile(rb"^(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+):")
        text = subprocess.run(["tcpdump", "-r", self.path, "-tt", "-nn", "-A"], capture_output=True).stdout
        port = str(self.port).encode()
        ttfts, gaps = [], []
        sent, last = {}, {}

        def segment(t, src, dst, payload):
            if dst == port and b"POST " in payload:
                sent[src] = t
                last[src] = None
            elif src == port and dst in sent:
                for ev in payload.split(b"data: ")[1:]:
                    if not ev.startswith(b"{") or b'"choices":[]' in ev:
                        continue
                    prev = last.get(dst)
                    if prev is None:
                        ttfts.append((t - sent[dst]) * 1e3)
                    else:
                        gaps.append((t - prev) * 1e3)
                    last[dst] = t

        cur, buf = None, []
        for line in text.split(b"\n"):
            m = header.match(line)
            if m:
                if cur:
                    segment(*cur, b"\n".join(buf))
                cur, buf = (float(m.group(1)), m.group(2), m.group(3)), []
            elif cur:
                buf.append(line)
        if cur:
            segment(*cur, b"\n".join(buf))
        return ttfts, gaps


def pctl(values, q):
    """The q-quantile of `values` (nearest rank), None when empty."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


# ---------------------------------------------------------------------------------------------
# Processes: CPU time and memory of a whole tree


def _children(pid):
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def proc_cpu_s(pid):
    """utime + stime of a process (all its threads) and of its reaped children, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command: state=0, ..., utime=11, stime=12, cutime=13, cstime=14.
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


def proc_rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def tree_cpu_s(pid):
    return sum(proc_cpu_s(p) for p in tree(pid))


def tree_rss_bytes(pid):
    return sum(proc_rss_bytes(p) for p in tree(pid))


class Sampler(threading.Thread):
    """Samples a process tree's CPU seconds and RSS every `interval`, and optionally a callback
    (e.g. a server's gauges). `samples`: [(t, cpu_s, rss_bytes, extra)]."""

    def __init__(self, pid, interval=0.1, extra=None):
        super().__init__(daemon=True)
        self.pid, self.interval, self.extra = pid, interval, extra
        self.samples = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            t = time.monotonic()
            cpu, rss = tree_cpu_s(self.pid), tree_rss_bytes(self.pid)
            extra = None
            if self.extra:
                try:
                    extra = self.extra()
                except Exception:
                    extra = None
            if rss > 0:
                self.samples.append((t, cpu, rss, extra))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()

    def peak_rss(self):
        return max((s[2] for s in self.samples), default=0)


def run_measured(argv, env=None, sampler_interval=0.1, extra=None, cwd=None, timeout=None):
    """Run `argv`; return (returncode, stdout, stderr, rusage, sampler). rusage covers the
    process and the children it waited for (CPU seconds, peak RSS)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
    sampler = Sampler(proc.pid, sampler_interval, extra)
    sampler.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline and time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.02)
    sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), ru, sampler


# ---------------------------------------------------------------------------------------------
# aibench and vLLM runs


def aibench_bench(url, args, out_dir, env=None, extra=None, sampler_interval=0.1):
    """`aibench bench URL ARGS --json --out OUT_DIR`; returns (summary, rusage, sampler, run_dir)."""
    argv = [aibench_bin(), "bench", url, *args, "--json", "--out", out_dir]
    before = set(os.listdir(out_dir)) if os.path.isdir(out_dir) else set()
    rc, out, err, ru, sampler = run_measured(argv, env=env, extra=extra, sampler_interval=sampler_interval)
    if rc != 0:
        raise RuntimeError(f"aibench bench failed ({rc}): {' '.join(argv)}\n{err[-3000:]}")
    # The results root also gets the run catalog (a file): only folders are runs.
    new = sorted(d for d in set(os.listdir(out_dir)) - before if os.path.isdir(os.path.join(out_dir, d)))
    run_dir = os.path.join(out_dir, new[-1]) if new else None
    return json.loads(out), ru, sampler, run_dir


def vllm_bench(vllm, tokenizer, url, args, out_dir, extra=None, sampler_interval=0.1):
    """`vllm bench serve` against an OpenAI completions endpoint; returns (result, rusage,
    sampler). The result is vLLM's saved JSON (with the per-request details)."""
    os.makedirs(out_dir, exist_ok=True)
    name = f"vllm-{time.time_ns()}.json"
    argv = [
        vllm, "bench", "serve", "--backend", "openai", "--base-url", url,
        "--endpoint", "/v1/completions", "--model", "sim", "--tokenizer", tokenizer,
        "--ready-check-timeout-sec", "0",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--save-result", "--save-detailed", "--result-dir", out_dir, "--result-filename", name,
        *args,
    ]
    rc, out, err, ru, sampler = run_measured(argv, env=offline_env(), extra=extra, sampler_interval=sampler_interval)
    path = os.path.join(out_dir, name)
    if rc != 0 or not os.path.isfile(path):
        raise RuntimeError(f"vllm bench serve failed ({rc}): {' '.join(argv)}\n{(out + err)[-3000:]}")
    with open(path) as f:
        result = json.load(f)
    os.unlink(path)
    return result, ru, sampler


def vllm_mean_concurrency(result):
    """Mean requests in flight over the run, from vLLM's per-request start times and latencies
    (the same definition as aibench's: request-seconds in flight / span from the first send
    to the last end)."""
    starts, lats = result.get("start_times") or [], result.get("latencies") or []
    pairs = [(s, l) for s, l, e in zip(starts, lats, result.get("errors") or [""] * len(starts))
             if l and not e]
    if not pairs:
        return None
    span = max(s + l for s, l in pairs) - min(s for s, _ in pairs)
    return sum(l for _, l in pairs) / span if span > 0 else None


# ---------------------------------------------------------------------------------------------
# Reporting


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def load_average():
    return os.getloadavg()


def wait_for_quiet(max_load, max_wait_s, log=sys.stderr):
    """Wait (at most `max_wait_s`) for the 1-minute load average to fall below `max_load`."""
    if max_load is None:
        return
    t0 = time.time()
    while os.getloadavg()[0] > max_load and time.time() - t0 < max_wait_s:
        print(f"  waiting for a quieter machine: load {os.getloadavg()[0]:.2f} > {max_load}",
              file=log)
        time.sleep(10)


def fmt(v, spec=".2f", none="-"):
    if v is None:
        return none
    if isinstance(v, str):
        return v
    return format(v, spec)


def table(headers, rows):
    """A plain-text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for k, r in enumerate(cells):
        parts = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_times():
    """The machine's CPU time counters (/proc/stat's first line), for `cpu_shares`."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None


def cpu_shares(before, after):
    """Between two `cpu_times`: the shares (%) of busy, idle and stolen time. Steal is time the
    hypervisor ran something else while this virtual machine had work: during it nothing here
    runs, so nothing wakes on time."""
    if not before or not after:
        return None
    d = [b - a for a, b in zip(before, after)]
    total = sum(d[:8]) or 1
    idle = d[3] + d[4]
    return {"busy": 100 * (total - idle - d[7]) / total, "idle": 100 * idle / total,
            "steal": 100 * d[7] / total}


def machine_line():
    l1, l5, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {l1:.2f} (1 min) {l5:.2f} (5 min)"


def progress(msg):
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def fail(msg, code=2):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)
