"""The lab's addresses and ports (lab/netns.sh builds the namespaces that carry them).

    carrier: c0  10.0.1.10/16 10.0.1.20/16 10.0.1.50/16  <-veth->  sbc: priv0 10.0.0.100/16
    gw:      g0  203.0.113.10/24 .11 .12                 <-veth->  sbc: pub0  203.0.113.50/24
"""
from __future__ import annotations

import re

CARRIER_IP = "10.0.1.10"
CARRIER2_IP = "10.0.1.20"
TENANT_TRUNK_IP = "10.0.1.50"
SBC_PRIV_IP = "10.0.0.100"
SBC_PUB_IP = "203.0.113.50"
SBC_PRIV = f"{SBC_PRIV_IP}:5060"
SBC_PUB = f"{SBC_PUB_IP}:5080"
GW1_IP, GW2_IP, GW3_IP = "203.0.113.10", "203.0.113.11", "203.0.113.12"
API_BASE = "http://127.0.0.1:8080"
SIPP_MEDIA_PORT = 6000          # sipp's -mp default: its RTP echo socket, the port [media_port] gives
MEDIA_PORTS = (10000, 60000)    # the SBC's default relay port range
PRIVATE_RE = re.compile(rb"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


def gw_uri(ip: str, port: int = 5060) -> str:
    return f"sip:{ip}:{port}"
