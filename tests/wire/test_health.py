"""Liveness, readiness and refusing a bad configuration (issue 8 §5).

* ``/healthz`` and ``/readyz`` of a running node (the shared demo node), and with
  ``[metrics] enabled = false`` (no ``/metrics`` then, health still served);
* each readiness check failing, on a real store in this process (``metrics.Readiness``,
  ``OpsHttp``): listeners not yet bound, draining, the store closed, the upstream agent's
  status;
* ``idnode serve`` with a bad configuration exits 2 before binding anything: the test holds
  the HTTP port itself (a plain listening socket, no ``SO_REUSEPORT``), so a node that bound
  first would fail with "address in use" (exit 1) instead of naming the bad key — and the data
  directory must not even have been created.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from resolver import config as config_mod
from resolver.servers.metrics import OpsHttp, Readiness
from resolver.store.lmdb_store import LmdbStore
from resolver.upstream.agent import STATUS_FILE

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.wire

HEALTH_JSON = "application/health+json"


def test_healthz_and_readyz_of_a_running_node(node):
    r = node.get("/healthz")
    assert (r.status, r.content_type, json.loads(r.body)) == (200, HEALTH_JSON, {"status": "pass"})
    head = node.get("/healthz", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    r = node.get("/readyz")
    assert (r.status, r.content_type) == (200, HEALTH_JSON)
    doc = json.loads(r.body)
    assert doc["status"] == "pass"
    checks = doc["checks"]
    assert set(checks) == {"lmdb:open", "listeners:bound", "process:draining", "replication:lag"}
    assert all(rows[0]["status"] == "pass" for rows in checks.values())
    assert checks["listeners:bound"][0]["observedValue"] == [
        "http", "handle_udp", "handle_tcp", "dns_udp", "dns_tcp"]
    assert "not applicable" in checks["replication:lag"][0]["output"]
    assert node.get("/readyz", method="POST").status == 405
    assert node.get("/readyz?verbose=1").status == 200


def test_metrics_off_keeps_health(start_node):
    n = start_node(config_text="[metrics]\nenabled = false\n")
    r = n.get("/metrics")
    assert r.status == 404 and r.content_type.startswith("application/json")
    assert n.get("/healthz").status == 200 and n.get("/readyz").status == 200
    assert not (n.data / "metrics").exists()
    n.stop()


def _config(tmp_path, text: str = "") -> config_mod.Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config_mod.load(str(path), {"data": str(tmp_path / "data")})


def _ask(ops: OpsHttp, path: str) -> tuple[int, str, dict]:
    resp = asyncio.run(ops.dispatch(make_mocked_request("GET", path)))
    return resp.status, resp.headers["Content-Type"], orjson.loads(resp.body)


def test_each_readiness_check_fails_on_its_own(tmp_path):
    cfg = _config(tmp_path)
    store = LmdbStore(cfg.data)
    ready = Readiness(store, cfg)
    ops = OpsHttp(ready)
    try:
        status, ctype, doc = _ask(ops, "/readyz")  # nothing listening yet
        assert (status, ctype, doc["status"]) == (503, HEALTH_JSON, "fail")
        assert doc["checks"]["listeners:bound"][0]["status"] == "fail"
        ready.listening("http", "handle_udp", "handle_tcp")
        assert _ask(ops, "/readyz")[0] == 503  # DNS is configured (port 5353) but not bound
        ready.listening("dns_udp", "dns_tcp")
        status, _, doc = _ask(ops, "/readyz")
        assert (status, doc["status"]) == (200, "pass")
        ready.draining = True
        status, _, doc = _ask(ops, "/readyz")
        assert (status, doc["checks"]["process:draining"][0]["status"]) == (503, "fail")
        assert _ask(ops, "/healthz")[:2] == (200, HEALTH_JSON)  # alive while it drains
        ready.draining = False
    finally:
        store.close()
    status, _, doc = _ask(ops, "/readyz")
    assert (status, doc["checks"]["lmdb:open"][0]["status"]) == (503, "fail")
    assert asyncio.run(ops.dispatch(make_mocked_request("GET", "/metrics"))) is None  # off


def test_upstream_check_warns_without_failing(tmp_path):
    cfg = _config(tmp_path, '[upstream]\nservers = ["127.0.0.1:9"]\n')
    store = LmdbStore(cfg.data)
    try:
        ready = Readiness(store, cfg)
        ready.listening("http", "handle_udp", "handle_tcp", "dns_udp", "dns_tcp")
        ops = OpsHttp(ready)

        def upstream(status_doc: dict | None) -> tuple[int, str]:
            path = os.path.join(cfg.data, STATUS_FILE)
            if status_doc is None:
                if os.path.exists(path):
                    os.remove(path)
            else:
                with open(path, "wb") as fh:
                    fh.write(orjson.dumps(status_doc))
            code, _, doc = _ask(ops, "/readyz")
            return code, doc["checks"]["upstream:reachable"][0]["status"]

        down = {"127.0.0.1:9": {"state": "down"}}
        assert upstream(None) == (200, "warn")  # no agent status yet
        assert upstream({"time": time.time() - 60, "upstreams": down}) == (200, "warn")  # stale
        assert upstream({"time": time.time(), "upstreams": down}) == (200, "warn")  # all down
        assert upstream({"time": time.time(), "upstreams": {"127.0.0.1:9": {"state": "up"}}}) \
            == (200, "pass")  # fmt: skip
    finally:
        store.close()


BAD_CONFIGS = {
    "toml": ("[http\nport = 1\n", "idnode-bad.toml"),
    "value": ('[http]\nallow_anonymous_list = "yes"\n', "http.allow_anonymous_list"),
    "dns apex": ('[dns]\napex = "no..dots."\n', "dns"),
    "rrl": ("[dns.rrl]\nrate-limit = 2000\ninstant-limit = 1\n", "dns.rrl"),
    "empty secret": ('[takeover]\nsources = ["http://127.0.0.1:9"]\n'
                     'identity = "300:0.NA/88.118"\nsecret_file = "{empty}"\n',
                     "takeover.secret_file"),  # fmt: skip
    "tls pair": ('[http]\ntls_cert = "{junk}"\ntls_key = "{junk}"\n', "http.tls_cert"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_serve_refuses_a_bad_config_before_binding(case, tmp_path, idnode_env):
    text, named = BAD_CONFIGS[case]
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnot one\n")
    path = tmp_path / "idnode-bad.toml"
    path.write_text(text.format(empty=tmp_path / "empty", junk=tmp_path / "junk.pem"))
    data = tmp_path / "data"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "resolver", "serve", "--config", str(path),
                            "--data", str(data), "--http-port", str(port), "--handle-port", "0",
                            "--dns-port", "0", "--workers", "1"], cwd=REPO, env=idnode_env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert named in r.stderr and "Address already in use" not in r.stderr, r.stderr
    assert r.stdout == ""  # no banner: nothing was served
    assert not data.exists()  # the store was not even opened
