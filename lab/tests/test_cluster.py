"""Several SBC nodes on one database and one Redis (issue 17), in namespaces of the test's own
(kit/cluster.py: a carrier and a gateway host on two bridges with three SBC nodes; Redis on a unix
socket; a database of the cluster's own on the --db server). Runs only with --db (PostgreSQL or
MariaDB): the nodes share provisioning through it.

  cluster_three_nodes   three nodes (lease 3 s) see one another in their status. A gateway
                        added through node 1's API is in node 3's snapshot within a second and
                        takes node 3's next call. Tenant acme (max_cps 20): three sipp UACs at
                        20 calls/s each for 3 s, one per node, get 20 + 20/s × the burst's span
                        admitted across the cluster, within 10%. Then max_concurrent 30: 20
                        calls held 12 s offered to each node get exactly 30 answered across the
                        three (the rest 503 with Retry-After) and the nodes' calls_up sum to
                        30. Node 3 killed outright (SIGKILL) mid-call: once its lease passed,
                        node 1 takes exactly as many new calls as node 3 carried, while nodes 1
                        and 2 keep theirs to their BYEs."""
from __future__ import annotations

import threading
import time

from kit import cluster
from kit.calls import uac_outcomes
from kit.ctx import Ctx, TestFailure, check
from kit.registry import lab_test
from kit.sbc import Sbc
from kit.sipp import Uas, run_uac

NODES = 3
LEASE_S = 3
NUMBER = "919876543210"


def members(sbc: Sbc) -> list[str]:
    c = sbc.api.status().get("cluster") or {}
    return [n.get("node_id") for n in c.get("nodes") or []]


def wait_for(what: str, cond, timeout: float) -> float:
    """Seconds until cond() held; fails the test after `timeout`."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TestFailure(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def uacs(d, targets: list[tuple[int, str]], tag: str, *, calls: int, rate: float, hold_ms: int,
         timeout_s: int = 60) -> dict:
    """One sipp UAC (uac_limit: 200 or 503 with Retry-After) per (local port, node address), all
    at once from the carrier; {node address: outcomes}. A BYE is sent 3 times at most, so the
    calls of a node killed end within 4 s of their BYE."""
    out: dict = {}

    def one(port: int, target: str) -> None:
        r = run_uac(cluster.CARRIER_NS, "uac_limit", cluster.CARRIER_IP, port, f"{target}:5060", d,
                    f"{tag}_{port}", calls=calls, rate=rate, limit=calls, duration_ms=hold_ms,
                    timeout_s=timeout_s, service=NUMBER, extra=["-max_non_invite_retrans", "2"])
        out[target] = (r, uac_outcomes(r))

    threads = [threading.Thread(target=one, args=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@lab_test(needs_db=True)
def cluster_three_nodes(ctx: Ctx):
    d = ctx.tdir("cluster_three_nodes")
    cluster.up(NODES)
    redis = None
    nodes: list[Sbc] = []
    uas = None
    try:
        redis = cluster.Redis(d)
        db = cluster.fresh_database(ctx.args.db)
        for i in range(1, NODES + 1):
            priv, pub = cluster.node_ips(i)
            nodes.append(Sbc(ctx.sbc.binary, d, db_url=db, backend="socket", ns=cluster.node_ns(i),
                             priv_ip=priv, pub_ip=pub, name=f"node{i}",
                             extra_tables=f'[cluster]\nnode_id = "n{i}"\nredis = "{redis.url}"\n'
                                          f'lease_s = {LEASE_S}\n'))
        for n in nodes:
            n.start()
        everyone = [f"n{i}" for i in range(1, NODES + 1)]
        wait_for("every node in every node's membership",
                 lambda: all(members(n) == everyone for n in nodes), 2 * LEASE_S)
        n1, n3 = nodes[0], nodes[-1]
        n1.api.add_carrier("10.0.1.0", 16, "carriers", 1)
        n1.api.add_gateway(f"sip:{cluster.GW_IPS[0]}:5060", group=1, priority=1, description="gw-a")
        n1.api.add_tenant("acme", cluster.CARRIER_IP, 1, max_cps=20, max_concurrent=1000)
        wait_for("provisioning on every node",
                 lambda: all(n.api.status()["provisioned"]["tenants"] == 1 for n in nodes), 3)

        # A gateway added through node 1 takes node 3's calls within a second.
        uas = Uas(cluster.GW_NS, "uas_simple", cluster.GW_IPS[1], 5060, d, "uas_b", trace_msg=False)
        n1.api.add_gateway(f"sip:{cluster.GW_IPS[1]}:5060", group=1, priority=9, description="gw-b")
        took = wait_for("the new gateway in node 3's snapshot",
                        lambda: n3.api.status()["provisioned"]["gateways"] == 2, 1.0)
        print(f"  gateway added on node 1 in node 3's snapshot after {took * 1000:.0f} ms", flush=True)
        r = run_uac(cluster.CARRIER_NS, "uac_simple", cluster.CARRIER_IP, 5070,
                    f"{cluster.node_ips(3)[0]}:5060", d, "uac_new_gw", calls=1, rate=1,
                    duration_ms=200, timeout_s=15, service=NUMBER, trace_msg=False)
        check(r.ok(1), f"node 3's call through the new gateway: {r.summary()}\n{r.diagnostics()}")

        # max_cps 20 across the three nodes, offered 60 calls/s.
        targets = [(5061 + i, cluster.node_ips(i + 1)[0]) for i in range(NODES)]
        res = uacs(d, targets, "cps", calls=60, rate=20, hold_ms=100)
        admitted = sum(o["codes"].get("200", 0) for _, o in res.values())
        limited = sum(o["codes"].get("503", 0) for _, o in res.values())
        ts = sorted(m.ts for _, o in res.values() for m in o["invites"])
        span = ts[-1] - ts[0] if ts else 0.0
        want = 20 + 20 * span
        print(f"  max_cps 20: {admitted} of {len(ts)} admitted over {span:.2f} s "
              f"({want:.0f} wanted)", flush=True)
        check(admitted + limited == 3 * 60,
              f"every INVITE ends in 200 or 503: {[o['codes'] for _, o in res.values()]}")
        check(abs(admitted - want) <= 0.1 * want,
              f"max_cps across the nodes: {admitted} admitted, {want:.0f} wanted within 10%")

        # max_concurrent 30 to the call across the nodes.
        n1.api.add_tenant("acme", cluster.CARRIER_IP, 1, max_cps=1000, max_concurrent=30)
        time.sleep(1.0)  # the other nodes read the database's change version every 0.5 s
        held: dict = {}
        burst = threading.Thread(target=lambda: held.update(
            uacs(d, [(5071 + i, cluster.node_ips(i + 1)[0]) for i in range(NODES)], "held",
                 calls=20, rate=100, hold_ms=12_000)))
        burst.start()
        time.sleep(2.5)
        up = [n.api.status()["calls_up"] for n in nodes]
        check(sum(up) == 30, f"calls up across the nodes: {up} (want 30 in all)")
        k3 = up[-1]
        n3.crash()
        # Once node 3's lease passed its slots are free: node 1 takes exactly that many.
        time.sleep(LEASE_S + 0.5)
        # Node 1 drops it from its list at its next heartbeat (a third of the lease).
        wait_for(f"node 3 out of node 1's membership ({members(n1)})",
                 lambda: members(n1) == everyone[:-1], LEASE_S / 3 + 1.0)
        more = uacs(d, [(5080, cluster.node_ips(1)[0])], "after_kill", calls=20, rate=100,
                    hold_ms=1000)
        (_, o), = more.values()
        check(o["codes"].get("200", 0) == k3,
              f"after node 3 died with {k3} calls: {o['codes']} (want {k3} answered)")
        burst.join()
        for i in (1, 2):
            r, _ = held[cluster.node_ips(i)[0]]
            check(r.failed == 0, f"node {i}'s calls while node 3 died: {r.summary()}\n{r.diagnostics()}")
        got = {t: o["codes"] for t, (_, o) in held.items()}
        answered = sum(c.get("200", 0) for c in got.values())
        check(answered == 30, f"answered across the nodes: {got} (want exactly 30)")
        print(f"  max_concurrent 30: {up} up per node; node 3 killed with {k3}: node 1 took {k3} "
              f"more after the lease", flush=True)
    finally:
        if uas is not None:
            uas.stop(linger=0)
        for n in nodes:
            if n.alive():
                n.stop()
        if redis is not None:
            redis.stop()
        cluster.down(NODES)
