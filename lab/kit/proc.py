"""Processes the lab starts: a registry so that cleanup can end each by its own pid, stopping one
with escalation, /proc accounting (CPU seconds, memory), and the main() wrapper of the lab's
scripts (lab/run.py, perf/cps_lab.py, perf/rtp_lab.py).

Every process runs inside one of the lab namespaces (`ip netns exec NS ...`, which execs, so the
pid is the program's)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

_procs: list[subprocess.Popen] = []


def nsexec(ns: str, argv: list) -> list[str]:
    return ["ip", "netns", "exec", ns] + [str(a) for a in argv]


def spawn(argv: list, *, stdout=None, stderr=None, cwd=None, env=None) -> subprocess.Popen:
    """Start a process (normally `ip netns exec NS ...`) and register it for cleanup."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                         cwd=cwd, env=env, start_new_session=True)
    _procs.append(p)
    return p


def stop_process(p: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 3.0) -> int | None:
    """Signal one process we started, wait, escalate to SIGKILL. Returns its exit status."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                p.kill()
            except ProcessLookupError:
                pass
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                pass
    if p in _procs:
        _procs.remove(p)
    return p.returncode


def stop_all() -> None:
    """Stop every process still registered, newest first."""
    for p in list(reversed(_procs)):
        stop_process(p, signal.SIGTERM, grace=2.0)


def tail(path: Path | str, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<{path}: {e}>"
    return "\n".join(data.splitlines()[-lines:])


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (all its threads), or of its thread `tid`."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(path) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # fields after "pid (comm)": state is rest[0]; utime = field 14, stime = field 15
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int | None:
    """A kB line of /proc/PID/status (VmHWM, VmRSS, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def thread_id(pid: int, name: str) -> int | None:
    """The id of the process's thread called `name`."""
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() == name:
                return int(t)
        except OSError:
            pass
    return None


class JsonScript:
    """A stdlib Python script run in namespace `ns` (`argv`: the script's path and its
    arguments), its stdout in `<d>/<tag>.json` and stderr in `<d>/<tag>.err`. It prints one JSON
    object per line; result() waits for it (up to `timeout`), stops it and returns the last one
    that is not `{"ready": ...}`."""

    def __init__(self, d: Path, tag: str, ns: str, argv: list):
        self.tag = tag
        self.out, self.err = d / f"{tag}.json", d / f"{tag}.err"
        self._o, self._e = open(self.out, "wb"), open(self.err, "wb")
        self.proc = spawn(nsexec(ns, [sys.executable] + [str(a) for a in argv]),
                          stdout=self._o, stderr=self._e)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def result(self, timeout: float) -> dict:
        import json
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.stop()
        for line in reversed(self.out.read_text(errors="replace").splitlines()):
            if line.startswith("{") and '"ready"' not in line:
                return json.loads(line)
        raise RuntimeError(f"{self.tag} printed no result:\n{tail(self.err, 20)}\n{tail(self.out, 5)}")

    def stop(self) -> None:
        stop_process(self.proc)
        for f in (self._o, self._e):
            if not f.closed:
                f.close()


def run_main(main) -> None:
    """Exit with main()'s status; Ctrl-C exits 130 (the lab is removed on the way out)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: lab removed", file=sys.stderr, flush=True)
        sys.exit(130)
