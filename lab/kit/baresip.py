"""baresip (v1.0.0, Debian's baresip-core) as a real user agent inside a lab namespace: a config
directory of its own (under the test's output directory), no registration (direct IP calls), PCMU
and PCMA only with RFC 4733 telephone events, a sine tone as its microphone (ausine, a frequency
per UA) and what it decodes recorded to a wav file (the sndfile filter writes
rec/dump-<time>-dec.wav: the decoded audio of every RTP packet received, 8 kHz mono, and -enc.wav
for what it sent). It is driven through ctrl_tcp (netstring JSON commands and events on
127.0.0.1 inside its namespace; the socket is opened from a thread that joins the namespace):
dial, sndcode (one RFC 4733 digit), hangup; its events (CALL_ESTABLISHED, CALL_DTMF_START with
the digit received, CALL_CLOSED, ...) are kept with their arrival time. It runs with -s: its log
holds every SIP message it sent and received, which sip_trace() reads back.

    ua = Baresip(d, "carrier", "carrier", CARRIER_IP, 5060, tone_hz=440, user=NUMBER)
    ua.dial(f"sip:{NUMBER}@{SBC_PRIV}"); ua.wait_event("CALL_ESTABLISHED")
    ua.send_digits("123"); ua.hangup(); ua.wait_event("CALL_CLOSED"); ua.stop()
    ua.digits_received(), ua.recording("dec"), ua.sip_trace()

This baresip answers (answer="auto") only a call whose Request-URI user is its account's user
(`user`), and 404s the others. tone_report() reads a recording with a Goertzel filter (standard
library only)."""
from __future__ import annotations

import ctypes
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from .netns import wait_udp_listen
from .proc import nsexec, spawn, stop_process, tail

BARESIP = "/usr/bin/baresip"
MODULES = Path("/usr/lib/baresip/modules")
CTRL_PORT = 4444
CLONE_NEWNET = 0x40000000

CONFIG = """\
poll_method		epoll
sip_listen		{ip}:{port}
net_interface		{ip}
call_local_timeout	30
call_max_calls		4
audio_source		ausine,{tone_hz}
audio_player		aubridge,play-{tag}
audio_alert		aubridge,alert-{tag}
ausrc_srate		48000
ausrc_channels		2
audio_buffer		20-160
rtcp_mux		no
jitter_buffer_delay	5-10
module_path		{modules}
module			g711.so
module			sndfile.so
module			ausine.so
module			aubridge.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{ctrl}
snd_path		{rec}
statmode_default	off
ringback_disabled	yes
"""

ACCOUNT = "<sip:{user}@{ip}:{port}>;regint=0;answermode={answer};audio_codecs=PCMU,PCMA;ptime=20\n"

TRACE_RE = re.compile(r"\x1b\[36;1m#\n(\w+) (\S+) -> (\S+)\n(.*?)\x1b\[;m", re.S)


@dataclass(frozen=True)
class TracedMsg:
    """One SIP message of baresip's -s trace: `sent` when src is the UA's own address."""
    sent: bool
    src: str
    dst: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0]

    def header(self, name: str) -> str | None:
        m = re.search(rf"^{name}\s*:\s*(.*?)\r?$", self.text, re.M | re.I)
        return m.group(1).strip() if m else None


def connect_in_ns(ns: str, addr: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """A TCP connection to addr made inside network namespace `ns` (from a short-lived thread
    that joins the namespace, so this process's own threads stay where they are; the socket
    keeps the namespace it was made in)."""
    out: dict = {}

    def run():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    out["sock"] = socket.create_connection(addr, timeout=1.0)
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        except Exception as e:  # noqa: BLE001
            out["error"] = e

    th = threading.Thread(target=run, name=f"netns-{ns}")
    th.start()
    th.join(timeout + 2)
    if "error" in out:
        raise out["error"]
    if "sock" not in out:
        raise TimeoutError(f"no connection to {addr} in ns {ns}")
    out["sock"].settimeout(None)
    return out["sock"]


def netstring(obj: dict) -> bytes:
    b = json.dumps(obj).encode()
    return str(len(b)).encode() + b":" + b + b","


class Baresip:
    """baresip listening on ip:port in `ns` (see the module's docstring). `answer`: "auto"
    answers every incoming call at once, "manual" leaves it ringing. Its files go to d/<tag>/
    (config, accounts, rec/) and d/<tag>.log (stdout and stderr, the SIP trace included)."""

    def __init__(self, d: Path, tag: str, ns: str, ip: str, port: int = 5060, *, tone_hz: int,
                 user: str = "lab", answer: str = "auto", ctrl_port: int = CTRL_PORT,
                 extra_args: list | None = None):
        self.tag, self.ns, self.ip, self.port, self.tone_hz = tag, ns, ip, port, tone_hz
        self.dir = d / tag
        self.rec_dir = self.dir / "rec"
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        for old in self.rec_dir.glob("*.wav"):
            old.unlink()
        (self.dir / "config").write_text(CONFIG.format(
            ip=ip, port=port, tone_hz=tone_hz, tag=tag, modules=MODULES, ctrl=ctrl_port,
            rec=self.rec_dir))
        (self.dir / "accounts").write_text(ACCOUNT.format(user=user, ip=ip, port=port, answer=answer))
        (self.dir / "contacts").write_text("")
        self.log_path = d / f"{tag}.log"
        self._log = open(self.log_path, "wb")
        self.proc = spawn(nsexec(ns, [BARESIP, "-f", self.dir, "-s"] + list(extra_args or [])),
                          stdout=self._log, stderr=subprocess.STDOUT)
        self.events: list[tuple[float, dict]] = []     # (time.monotonic(), event) in arrival order
        self.responses: dict[str, dict] = {}
        self._cv = threading.Condition()
        self._token = 0
        self._sock: socket.socket | None = None
        try:
            if not wait_udp_listen(ns, ip, port, 5.0):
                raise RuntimeError(f"baresip {tag} did not bind {ip}:{port}")
            self._sock = connect_in_ns(ns, ("127.0.0.1", ctrl_port))
        except Exception as e:
            self.stop()
            raise RuntimeError(f"baresip {tag} did not start: {e}\n{tail(self.log_path, 20)}") from e
        self._reader = threading.Thread(target=self._read, name=f"baresip-{tag}", daemon=True)
        self._reader.start()

    # --- ctrl_tcp ---------------------------------------------------------------------------

    def _read(self) -> None:
        buf = b""
        sock = self._sock
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            while True:
                head, colon, rest = buf.partition(b":")
                if not colon or not head.isdigit():
                    break
                n = int(head)
                if len(rest) < n + 1:
                    break
                try:
                    msg = json.loads(rest[:n])
                except ValueError:
                    msg = {"unparsed": rest[:n].decode("utf-8", "replace")}
                buf = rest[n + 1:]
                with self._cv:
                    if msg.get("response"):
                        self.responses[str(msg.get("token"))] = msg
                    else:
                        self.events.append((time.monotonic(), msg))
                    self._cv.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict:
        """Send one ctrl_tcp command; returns its response ({"ok": ..., "data": ...})."""
        if self._sock is None:
            raise RuntimeError(f"baresip {self.tag}: no control connection")
        self._token += 1
        token = f"{self.tag}-{self._token}"
        self._sock.sendall(netstring({"command": command, "params": params, "token": token}))
        deadline = time.monotonic() + timeout
        with self._cv:
            while token not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"baresip {self.tag}: no response to {command} {params!r}")
                self._cv.wait(left)
            r = self.responses[token]
        if not r.get("ok"):
            raise RuntimeError(f"baresip {self.tag}: {command} {params!r} answered {r}")
        return r

    def dial(self, uri: str) -> dict:
        return self.command("dial", uri)

    def send_digits(self, digits: str, gap: float = 0.4) -> list[float]:
        """One RFC 4733 event per digit (baresip's sndcode: ~180 ms each), `gap` s apart;
        returns when each was sent."""
        sent = []
        for i, digit in enumerate(digits):
            if i:
                time.sleep(gap)
            sent.append(time.monotonic())
            self.command("sndcode", digit)
        return sent

    def hangup(self) -> dict:
        return self.command("hangup")

    def wait_event(self, kind: str, timeout: float = 10.0, count: int = 1) -> dict | None:
        """The count-th event of type `kind` (waiting up to `timeout` s for it), or None."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                got = [e for _, e in self.events if e.get("type") == kind]
                if len(got) >= count:
                    return got[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)

    def event_times(self, kind: str) -> list[float]:
        with self._cv:
            return [t for t, e in self.events if e.get("type") == kind]

    def event_types(self) -> list[str]:
        with self._cv:
            return [str(e.get("type")) for _, e in self.events]

    def digits_received(self) -> str:
        """The digits of the telephone events it received (CALL_DTMF_START), in order."""
        with self._cv:
            return "".join(str(e.get("param", "?")) for _, e in self.events
                           if e.get("type") == "CALL_DTMF_START")

    def dtmf_ends(self) -> int:
        with self._cv:
            return sum(1 for _, e in self.events if e.get("type") == "CALL_DTMF_END")

    # --- after the call -----------------------------------------------------------------------

    def stop(self) -> int | None:
        """Quit (SIGTERM, then SIGKILL); the log is complete afterwards."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        rc = stop_process(self.proc, signal.SIGTERM, grace=3.0)
        if not self._log.closed:
            self._log.close()
        return rc

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def sip_trace(self) -> list[TracedMsg]:
        """Every SIP message of its -s trace, in order."""
        me = f"{self.ip}:{self.port}"
        return [TracedMsg(src == me, src, dst, text.replace("\r\n", "\n"))
                for _proto, src, dst, text in TRACE_RE.findall(self.log_text())]

    def recording(self, kind: str = "dec") -> Path | None:
        """The newest wav sndfile wrote: "dec" what it received (decoded), "enc" what it sent."""
        files = sorted(self.rec_dir.glob(f"dump-*-{kind}.wav"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None


# --- the recordings -------------------------------------------------------------------------

def read_wav(path: Path) -> tuple[int, list[int]]:
    """(sample rate, samples of the first channel) of a 16-bit PCM wav file."""
    with wave.open(str(path)) as w:
        rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    if width != 2:
        raise ValueError(f"{path}: {width * 8}-bit samples (want 16)")
    n = len(raw) // (2 * ch)
    return rate, list(struct.unpack(f"<{n * ch}h", raw[:n * ch * 2]))[::ch]


def tone_share(block: list[int], rate: int, hz: float) -> float:
    """The share of the block's energy at `hz` (Goertzel): ~1 for a pure tone of that
    frequency, ~0 for another tone or noise, 0 for silence."""
    n = len(block)
    energy = sum(x * x for x in block) / n
    if energy < 1.0:
        return 0.0
    k = 2.0 * math.cos(2.0 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + k * s1 - s2, s1
    power = (s1 * s1 + s2 * s2 - k * s1 * s2) * 2.0 / (n * n)   # amplitude^2 / 2 of that bin
    return power / energy


def tone_report(path: Path | None, want_hz: float, other_hz: float, block_ms: int = 50,
                threshold: float = 0.8) -> dict:
    """Cut a recording into blocks and count those whose energy is mostly (>= threshold) at
    want_hz, or at other_hz, and the silent ones. {"seconds", "blocks", "want", "other",
    "silent", "mean_share", "rms"}; seconds 0 when there is no recording."""
    if path is None or not Path(path).exists():
        return {"seconds": 0.0, "blocks": 0, "want": 0, "other": 0, "silent": 0, "mean_share": 0.0,
                "rms": 0.0, "path": str(path)}
    rate, samples = read_wav(Path(path))
    n = max(1, rate * block_ms // 1000)
    blocks = [samples[i:i + n] for i in range(0, len(samples) - n + 1, n)]
    want = other = silent = 0
    shares = []
    for b in blocks:
        rms = math.sqrt(sum(x * x for x in b) / n)
        if rms < 100:
            silent += 1
            continue
        s = tone_share(b, rate, want_hz)
        shares.append(s)
        if s >= threshold:
            want += 1
        elif tone_share(b, rate, other_hz) >= threshold:
            other += 1
    total_rms = math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0
    return {"seconds": len(samples) / rate, "blocks": len(blocks), "want": want, "other": other,
            "silent": silent, "mean_share": sum(shares) / len(shares) if shares else 0.0,
            "rms": total_rms, "path": str(path)}
