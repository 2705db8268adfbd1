"""sipp runs: a UAC in the foreground (run_uac), a UAS in the background (Uas), their statistics
(SippResult), and the response times of a -trace_rtt file."""
from __future__ import annotations

import csv
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .netns import wait_udp_listen
from .paths import SIPP_DIR
from .proc import nsexec, spawn, stop_process, tail


@dataclass
class SippResult:
    name: str
    rc: int | None
    elapsed: float
    timed_out: bool
    stats: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    @property
    def successful(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", 0) or 0)

    @property
    def failed(self) -> int:
        return int(self.stats.get("FailedCall(C)", 0) or 0)

    def ok(self, calls: int) -> bool:
        return self.rc == 0 and not self.timed_out and self.failed == 0 and self.successful == calls

    def summary(self) -> str:
        return (f"{self.name}: rc={self.rc}{' TIMEOUT' if self.timed_out else ''} "
                f"successful={self.successful} failed={self.failed} elapsed={self.elapsed:.1f}s")

    def diagnostics(self, lines: int = 40) -> str:
        out = [self.summary()]
        for key in ("errors", "stdout"):
            p = self.files.get(key)
            if p and Path(p).exists() and Path(p).stat().st_size:
                out.append(f"--- {key}: {p}\n{tail(p, lines)}")
        if self.files.get("messages"):
            out.append(f"--- message trace: {self.files['messages']}")
        return "\n".join(out)


def read_sipp_stats(path: Path) -> dict:
    """Last row of a sipp -trace_stat file (';'-separated, header in the first row)."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))


def sipp_argv(scenario: str, local_ip: str, port: int, out_dir: Path, name: str, *,
              target: str | None = None, calls: int | None = None, rate: float | None = None,
              limit: int | None = None, duration_ms: int | None = None,
              timeout_s: int | None = None, service: str | None = None,
              trace_msg: bool = True, rtt: bool = False, extra: list[str] | None = None) -> tuple[list, dict]:
    scen = SIPP_DIR / (scenario if scenario.endswith(".xml") else scenario + ".xml")
    files = {
        "stats": out_dir / f"{name}.stat.csv",
        "errors": out_dir / f"{name}.errors.log",
        "stdout": out_dir / f"{name}.out",
    }
    argv = ["sipp", "-sf", str(scen), "-i", local_ip, "-p", str(port), "-mi", local_ip,
            "-nostdin", "-trace_stat", "-stf", str(files["stats"]), "-fd", "1",
            "-trace_err", "-error_file", str(files["errors"])]
    if trace_msg:
        files["messages"] = out_dir / f"{name}.messages.log"
        argv += ["-trace_msg", "-message_file", str(files["messages"])]
    if rtt:
        argv += ["-trace_rtt", "-rtt_freq", "1"]  # sipp only writes rtt rows every rtt_freq calls
    if calls is not None:
        argv += ["-m", str(calls)]
    if rate is not None:
        argv += ["-r", str(rate)]
    if limit is not None:
        argv += ["-l", str(limit)]
    if duration_ms is not None:
        argv += ["-d", str(duration_ms)]
    if timeout_s is not None:
        argv += ["-timeout", f"{timeout_s}s", "-timeout_error"]
    if service is not None:
        argv += ["-s", service]
    argv += list(extra or [])
    if target is not None:
        argv.append(target)
    return argv, files


def run_uac(ns: str, scenario: str, local_ip: str, port: int, target: str, out_dir: Path, name: str,
            *, calls: int = 1, rate: float = 10, limit: int | None = None, duration_ms: int = 1000,
            timeout_s: int = 120, service: str = "919876543210", trace_msg: bool = True,
            rtt: bool = False, extra: list[str] | None = None) -> SippResult:
    """Run a sipp UAC in the foreground (bounded by -timeout and a subprocess timeout)."""
    argv, files = sipp_argv(scenario, local_ip, port, out_dir, name, target=target, calls=calls,
                            rate=rate, limit=limit or max(1, calls), duration_ms=duration_ms,
                            timeout_s=timeout_s, service=service, trace_msg=trace_msg, rtt=rtt,
                            extra=extra)
    t0 = time.monotonic()
    timed_out = False
    with open(files["stdout"], "wb") as out:
        p = spawn(nsexec(ns, argv), stdout=out, stderr=subprocess.STDOUT, cwd=out_dir)
        try:
            p.wait(timeout_s + 15)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process(p, signal.SIGUSR1, grace=0.5)
        stop_process(p)
    elapsed = time.monotonic() - t0
    if rtt:
        found = sorted(out_dir.glob(f"{Path(scenario).stem}_{p.pid}_rtt.csv"))
        if found:
            files["rtt"] = found[0]
    return SippResult(name, p.returncode, elapsed, timed_out, read_sipp_stats(files["stats"]), files)


class Uas:
    """A sipp UAS running in the background; stop() ends it and collects its statistics."""

    def __init__(self, ns: str, scenario: str, local_ip: str, port: int, out_dir: Path, name: str,
                 *, trace_msg: bool = True, extra: list[str] | None = None):
        self.ns, self.ip, self.port, self.name = ns, local_ip, port, name
        argv, self.files = sipp_argv(scenario, local_ip, port, out_dir, name, trace_msg=trace_msg,
                                     extra=extra)
        self._out = open(self.files["stdout"], "wb")
        self.proc = spawn(nsexec(ns, argv), stdout=self._out, stderr=subprocess.STDOUT, cwd=out_dir)
        if not wait_udp_listen(ns, local_ip, port, 5.0):
            self.stop()
            raise RuntimeError(f"sipp UAS {name} did not bind {local_ip}:{port}:\n"
                               + tail(self.files["stdout"], 20))

    def stop(self, linger: float = 0.5) -> SippResult:
        time.sleep(linger)  # let the last retransmissions/ACKs arrive
        t0 = time.monotonic()
        p = self.proc
        if p.poll() is None:
            # SIGUSR1 once: no new calls; twice: abort the open ones and exit (writing statistics).
            for _ in range(2):
                try:
                    p.send_signal(signal.SIGUSR1)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
        stop_process(p, signal.SIGTERM, grace=3.0)
        self._out.close()
        return SippResult(self.name, p.returncode, time.monotonic() - t0, False,
                          read_sipp_stats(self.files["stats"]), self.files)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None or not self._out.closed:
            self.stop(linger=0)
        return False


def rtt_values_ms(path: Path) -> list[float]:
    """Response times (ms) from a sipp -trace_rtt file: 'Date_ms;response_time_ms;rtd_no' rows."""
    vals = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) >= 2:
                    try:
                        vals.append(float(parts[1]))
                    except ValueError:
                        pass
    except OSError:
        pass
    return vals


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
