"""The registry of lab tests: `@lab_test` on a function of lab/tests/test_<feature>.py makes it a
test named after the function; discover() imports those files and returns the tests in the order
they run.

Order: file order (test_*.py sorted by name), then definition order; what a test declares moves
it to the end: `load=True` (runs only with --load or --only) after the others, and
`restarts_sbc=True` (the SBC's counters and live calls start again) after everything.
`pending=True`: a feature not built yet or a known fault, run only with --pending or --only.
`needs_db=True`: a test that needs a database server (--db: PostgreSQL or MariaDB), run only
with one (SQLite is one host's file: several nodes cannot share it over a network)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class LabTest:
    name: str
    fn: Callable
    module: str
    seq: int                    # registration order: file order, then definition order
    restarts_sbc: bool = False
    load: bool = False
    pending: bool = False
    needs_db: bool = False

    @property
    def sort_key(self) -> tuple:
        return self.restarts_sbc, self.load, self.seq


_tests: dict[str, LabTest] = {}


def lab_test(fn: Callable | None = None, *, restarts_sbc: bool = False, load: bool = False,
             pending: bool = False, needs_db: bool = False):
    """`@lab_test` or `@lab_test(restarts_sbc=True, load=False, pending=False, needs_db=False)`."""

    def register(f: Callable) -> Callable:
        if f.__name__ in _tests:
            raise ValueError(f"two lab tests are called {f.__name__} "
                             f"({_tests[f.__name__].module} and {f.__module__})")
        _tests[f.__name__] = LabTest(f.__name__, f, f.__module__, len(_tests), restarts_sbc, load,
                                     pending, needs_db)
        return f

    return register(fn) if fn is not None else register


def discover(tests_dir: Path, package: str = "tests") -> list[LabTest]:
    """Import every tests_dir/test_*.py (as package.test_*) and return all tests in run order."""
    for path in sorted(tests_dir.glob("test_*.py")):
        importlib.import_module(f"{package}.{path.stem}")
    return sorted(_tests.values(), key=lambda t: t.sort_key)
