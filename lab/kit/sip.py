"""SIP as the tests see it: the messages of a sipp -trace_msg file (SipMsg, with the SDP of its
body as Sdp), and one-shot UDP sends from inside a namespace through lab/sipsend.py."""
from __future__ import annotations

import datetime
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .addresses import CARRIER_IP, SBC_PRIV
from .paths import SIPSEND
from .proc import nsexec


@dataclass
class SipMsg:
    ts: float          # seconds since the epoch (sipp's wall-clock stamp)
    direction: str     # "sent" | "received"
    text: str          # the message, CRLF turned into LF

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    def is_request(self, method: str) -> bool:
        return self.first_line.startswith(method + " ")

    def is_response(self, code: int | None = None, method: str | None = None) -> bool:
        if not self.first_line.startswith("SIP/2.0 "):
            return False
        if code is not None and not self.first_line.startswith(f"SIP/2.0 {code}"):
            return False
        return method is None or re.search(rf"^CSeq:\s*\d+\s+{method}\s*$", self.head, re.M | re.I) is not None

    @property
    def head(self) -> str:
        return self.text.split("\n\n", 1)[0]

    def headers(self, name: str) -> list[str]:
        """Values of every header line called `name` (case-insensitive; no compact forms)."""
        out = []
        for line in self.head.split("\n")[1:]:
            if ":" in line:
                n, v = line.split(":", 1)
                if n.strip().lower() == name.lower():
                    out.append(v.strip())
        return out

    def header(self, name: str) -> str | None:
        h = self.headers(name)
        return h[0] if h else None

    @property
    def body(self) -> str:
        return self.text.split("\n\n", 1)[1] if "\n\n" in self.text else ""

    @property
    def sdp(self) -> "Sdp | None":
        return parse_sdp(self.body)

    @property
    def cseq_method(self) -> str | None:
        c = self.header("CSeq")
        return c.split()[-1].upper() if c and c.split() else None

    @property
    def ruri_user(self) -> str | None:
        m = re.match(r"^[A-Z]+ sips?:([^@;>\s]+)@", self.first_line)
        return m.group(1) if m else None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID") or self.header("i")


@dataclass
class Sdp:
    """What the lab tests look at in an SDP body (the first m=audio line)."""
    origin: str | None      # o= address
    conn: str | None        # c= address of the audio stream (media level over session level)
    port: int | None        # m=audio port
    rtcp: str | None        # a=rtcp value, if any
    direction: str          # a=sendrecv|sendonly|recvonly|inactive (sendrecv when absent)
    text: str

    @property
    def addr(self) -> tuple[str | None, int | None]:
        return self.conn, self.port


def parse_sdp(body: str) -> Sdp | None:
    if not body.lstrip().startswith("v=0"):
        return None
    origin = sess_c = media_c = port = rtcp = None
    direction = sess_dir = None
    in_audio = seen_audio = False
    for line in body.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("o="):
            f = line[2:].split()
            origin = f[5] if len(f) >= 6 else None
        elif line.startswith("m="):
            in_audio = line.startswith("m=audio ") and not seen_audio
            if in_audio:
                seen_audio = True
                f = line.split()
                port = int(f[1].split("/")[0]) if len(f) > 1 and f[1].split("/")[0].isdigit() else None
        elif line.startswith("c="):
            addr = line.split()[-1].split("/")[0]
            if in_audio:
                media_c = addr
            elif not seen_audio:
                sess_c = addr
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and line.startswith("a="):
            if in_audio:
                direction = line[2:]
            elif not seen_audio:
                sess_dir = line[2:]
        elif line.startswith("a=rtcp:") and in_audio:
            rtcp = line[len("a=rtcp:"):]
    if not seen_audio:
        return None
    return Sdp(origin, media_c or sess_c, port, rtcp, direction or sess_dir or "sendrecv", body)


_SIPP_STAMP = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s*$", re.M)


def sipp_messages(path: Path | str | None) -> list[SipMsg]:
    """Every message of a sipp -trace_msg file, in order."""
    if not path:
        return []
    try:
        text = Path(path).read_text(errors="replace").replace("\r\n", "\n")
    except OSError:
        return []
    out = []
    marks = list(_SIPP_STAMP.finditer(text))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        block = text[m.end():end].lstrip("\n")
        kind, _, msg = block.partition("\n")
        direction = "received" if "received" in kind else "sent" if "sent" in kind else "?"
        try:
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            ts = 0.0
        out.append(SipMsg(ts, direction, msg.lstrip("\n").rstrip("\n") + "\n"))
    return out


def received_invites(path, initial_only: bool = True) -> list[SipMsg]:
    """INVITEs a sipp UAS received (first transmission per Call-ID; no re-INVITEs when
    initial_only: those carry a To tag)."""
    seen, out = set(), []
    for m in sipp_messages(path):
        if m.direction != "received" or not m.is_request("INVITE"):
            continue
        if initial_only and re.search(r";\s*tag=", m.header("To") or ""):
            continue
        key = (m.call_id, m.header("CSeq"))
        if key in seen:
            continue
        seen.add(key)
        out.append(m)
    return out


def sipsend(ns: str, args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(nsexec(ns, [sys.executable, SIPSEND] + args), capture_output=True,
                          text=True, timeout=timeout)


def options_status(ns: str = "carrier", bind: str = CARRIER_IP, to: str = SBC_PRIV,
                   timeout: float = 1.0) -> list[str]:
    """Send one OPTIONS; return the status lines received."""
    r = sipsend(ns, ["options", "--bind", bind, "--to", to, "--timeout", str(timeout)])
    return [line.split(" ", 2)[2] for line in r.stdout.splitlines() if line.startswith("REPLY ")]
