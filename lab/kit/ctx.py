"""What a lab test gets (Ctx: the run's options, its output directory, the running SBC and its
API) and how it fails (check, TestFailure)."""
from __future__ import annotations

from pathlib import Path

from .sbc import Sbc


class TestFailure(Exception):
    pass


def check(cond: bool, reason: str) -> None:
    if not cond:
        raise TestFailure(reason)


class Ctx:
    def __init__(self, args, out: Path, sbc: Sbc):
        self.args = args
        self.out = out
        self.sbc = sbc
        self.api = sbc.api

    def tdir(self, name: str) -> Path:
        """The test's own directory under the run's output (logs, sipp traces, captures)."""
        d = self.out / name
        d.mkdir(parents=True, exist_ok=True)
        return d
