#!/usr/bin/env python3
"""End-to-end tests of the SBC in the network-namespace lab (lab/netns.sh, lab/kit/, lab/tests/).

    sudo python3 lab/run.py [--sbc target/release/sbc] [--only NAME,...] [--files FEATURE,...]
                            [--load] [--pending] [--list] [--backend socket|dpdk] [--db URL]

Brings the lab up, starts the SBC inside ns `sbc` with a temporary SQLite database (or --db),
provisions it over the REST API (carrier 10.0.1.10/32 in group 1, gateway group 1 =
sip:203.0.113.10:5060; a test that needs other provisioning replaces it for its duration and puts
it back afterwards; the SBC runs with [routing] failover_timeout_ms = 1000), runs the tests, prints
`PASS name` / `FAIL name: reason` for each and finally one line `N passed, M failed`. Exit status
1 if anything failed. The rtp_* tests play sip-tester's /usr/share/sip-tester/g711a.pcap with sipp
(raw socket) and capture both SBC interfaces. Logs, sipp traces and captures go to
lab-out/tests-<timestamp>/ (lab-out/tests-latest points at the newest run).

The tests are the functions decorated @lab_test in lab/tests/test_<feature>.py; each stands
alone, so any --only selection runs as it would in the whole suite. A new test is a new such
function; kit/registry.py says in what order they run. `--files api,routing,operations` runs the
tests of lab/tests/test_api.py, test_routing.py and test_operations.py only (CI runs those again on
MariaDB and PostgreSQL: they provision, or write CDRs, through the database; the other files would
only repeat their coverage there).
"""
from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

from kit.ctx import Ctx, TestFailure
from kit.netns import Lab, default_backend
from kit.paths import DEFAULT_SBC, new_run_dir
from kit.proc import run_main, tail
from kit.provisioning import LAB_ROUTING, provision_base
from kit.registry import discover
from kit.sbc import Sbc

TESTS_DIR = Path(__file__).resolve().parent / "tests"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sbc", default=str(DEFAULT_SBC))
    ap.add_argument("--only", default="", help="comma-separated test names")
    ap.add_argument("--files", default="",
                    help="comma-separated features: only the tests of lab/tests/test_<feature>.py")
    ap.add_argument("--load", action="store_true", help="also run the load tests (10,000 calls)")
    ap.add_argument("--pending", action="store_true",
                    help="also run the tests of features not built yet or of known faults")
    ap.add_argument("--list", action="store_true", help="list the tests in run order and exit")
    ap.add_argument("--backend", choices=("socket", "dpdk"), default=default_backend(),
                    help="the SBC's dataplane (dpdk: an sbc built with --features dpdk owns priv0/pub0 "
                         "through net_af_packet vdevs)")
    ap.add_argument("--db", default=None,
                    help="database URL for the SBC (default: a fresh SQLite file); it must be empty "
                         "and reachable from inside ns sbc (a unix socket for MariaDB/PostgreSQL)")
    args = ap.parse_args()

    tests = discover(TESTS_DIR)
    if args.list:
        for t in tests:
            print(t.name + ("  (--load)" if t.load else "  (--pending)" if t.pending
                            else "  (--db)" if t.needs_db else ""))
        return 0
    if args.only:
        names = [t.name for t in tests]
        selected = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = sorted(selected - set(names))
        if unknown:
            ap.error(f"unknown test(s): {', '.join(unknown)} (have: {', '.join(names)})")
        run = [t for t in tests if t.name in selected]
    else:
        run = [t for t in tests if (args.load or not t.load) and (args.pending or not t.pending)
               and (args.db or not t.needs_db)]
    if args.files:
        features = {f.strip() for f in args.files.split(",") if f.strip()}
        have = {t.module.rsplit(".test_", 1)[-1] for t in tests}
        unknown = sorted(features - have)
        if unknown:
            ap.error(f"unknown feature file(s): {', '.join(unknown)} (have: {', '.join(sorted(have))})")
        run = [t for t in run if t.module.rsplit(".test_", 1)[-1] in features]

    out = new_run_dir("tests")
    print(f"output: {out}", flush=True)
    passed, failed = [], []

    def fail(name: str, reason: str) -> None:
        failed.append(name)
        print(f"FAIL {name}: {reason}", flush=True)

    with Lab(args.backend):
        sbc = Sbc(args.sbc, out, routing=LAB_ROUTING, db_url=args.db, backend=args.backend)
        print(f"database: {sbc.db_url}; backend: {sbc.backend}", flush=True)
        try:
            sbc.start()
            provision_base(sbc.api)
        except Exception as e:  # noqa: BLE001
            for t in run:
                fail(t.name, f"SBC setup failed: {e}")
            print(f"{len(passed)} passed, {len(failed)} failed", flush=True)
            return 1
        ctx = Ctx(args, out, sbc)

        for t in run:
            if not sbc.alive():
                fail(t.name, f"SBC is not running (exit status {sbc.proc.returncode}); log tail:\n"
                     + tail(sbc.log_path, 30))
                continue
            log_off = sbc.log_size()
            t0 = time.monotonic()
            try:
                t.fn(ctx)
            except TestFailure as e:
                fail(t.name, f"{e}\n--- SBC log during the test:\n{sbc.log_since(log_off, 30)}")
            except Exception as e:  # noqa: BLE001
                fail(t.name, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
                     f"--- SBC log during the test:\n{sbc.log_since(log_off, 30)}")
            else:
                if not sbc.alive():
                    fail(t.name, f"SBC died during the test (exit status {sbc.proc.returncode}):\n"
                         + sbc.log_since(log_off, 40))
                else:
                    passed.append(t.name)
                    print(f"PASS {t.name} ({time.monotonic() - t0:.1f} s)", flush=True)
        rc = sbc.stop()
        if rc not in (0, None, -15, 143):
            print(f"note: SBC exit status on SIGTERM: {rc}", flush=True)

    print(f"{len(passed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
