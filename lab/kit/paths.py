"""Where the lab's files are (the namespace script, sipp scenarios, sipsend.py, sip-tester's
audio capture) and the run directories under lab-out/."""
from __future__ import annotations

import time
from pathlib import Path

LAB = Path(__file__).resolve().parent.parent
REPO = LAB.parent
NETNS_SH = LAB / "netns.sh"
SIPP_DIR = LAB / "sipp"
SIPSEND = LAB / "sipsend.py"
DEFAULT_SBC = REPO / "target" / "release" / "sbc"


def sipp_pcap(name: str = "g711a.pcap") -> Path:
    """An audio capture sip-tester ships (play_pcap_audio in lab/sipp/uac_rtp*.xml uses
    /usr/share/sip-tester/g711a.pcap: 236 PCMA packets, 30 ms apart, 7 s)."""
    return Path("/usr/share/sip-tester") / name


def new_run_dir(kind: str) -> Path:
    """lab-out/<kind>-<timestamp>/, with lab-out/<kind>-latest pointing at it."""
    d = REPO / "lab-out" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    d.mkdir(parents=True, exist_ok=True)
    latest = REPO / "lab-out" / f"{kind}-latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(d.name)
    except OSError:
        pass
    return d
