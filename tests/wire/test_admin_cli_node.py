"""``idnode create/modify/delete`` against a running ``idnode serve`` (issue 4 acceptance).

The node holds one enterprise with two admin identities in its group: ``300:88.118.8/ADMIN``
(HS_SECKEY) and ``300:88.118.8/KEYS`` (HS_PUBKEY, RSA).  Each identity creates, modifies and
deletes an identifier through the CLI — the project's own Handle client over TCP, answering the
node's RC 402 challenge — and the change log (read over REST by a server admin) shows every
change once, with the identity that made it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from enterprises import enterprise
import requests

from resolver.protocols.handle import auth as A

pytestmark = pytest.mark.wire

SECRET = "cli secret 8"


@pytest.fixture(scope="module")
def cli_node(start_node, tmp_path_factory, load_lines):
    tmp = tmp_path_factory.mktemp("admincli")
    key = A.generate_rsa_key(2048)
    (tmp / "key.pem").write_bytes(A.private_key_pem(key))
    (tmp / "secret").write_text(SECRET)
    lines = enterprise("88.118.8", SECRET, A.rsa_public_key_bytes(key.public_key()))
    data = load_lines(tmp / "data", lines)
    node = start_node(data=data,
                      config_text='[node]\nserver_admins = ["300:88.118.8/ADMIN"]\n')  # fmt: skip
    node.creds = {"secret": ["--auth", "300:88.118.8/ADMIN", "--secret-file", str(tmp / "secret")],
                  "rsa": ["--auth", "300:88.118.8/KEYS", "--key", str(tmp / "key.pem")]}
    return node


def _idnode(node, env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resolver", *args, "--server",
                           f"127.0.0.1:{node.handle_port}"], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip


def _values(node, handle) -> dict:
    r = requests.get(f"{node.api_url}{handle}", timeout=10).json()
    return {v["type"]: v["data"]["value"] for v in r.get("values", []) if v["type"] != "HS_ADMIN"}


@pytest.mark.parametrize("cred, identity", [("secret", "300:88.118.8/ADMIN"),
                                            ("rsa", "300:88.118.8/KEYS")])  # fmt: skip
def test_create_modify_delete_through_the_cli(cli_node, idnode_env, cred, identity):
    h = f"88.118.8/CLI-{cred}"
    auth = cli_node.creds[cred]
    r = _idnode(cli_node, idnode_env, "create", h, *auth, "--value", "1:URL:https://example.com/a")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _values(cli_node, h) == {"URL": "https://example.com/a"}
    r = _idnode(cli_node, idnode_env, "modify", h, *auth, "--value", "1:URL:https://example.com/b")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _values(cli_node, h) == {"URL": "https://example.com/b"}
    r = _idnode(cli_node, idnode_env, "delete", h, *auth)
    assert r.returncode == 0, r.stdout + r.stderr
    assert requests.get(f"{cli_node.api_url}{h}", timeout=10).status_code == 404
    log = requests.get(f"{cli_node.base_url}/api/v1/changes?after=0&limit=1000",
                       auth=("300%3A88.118.8/ADMIN", SECRET), timeout=10).json()["changes"]  # fmt: skip
    mine = [(c["action"], c["op"], c["identity"]) for c in log if c["handle"] == h.upper()]
    assert mine == [("create", 100, identity), ("update", 104, identity),
                    ("delete", 101, identity)]  # fmt: skip


def test_a_wrong_secret_changes_nothing(cli_node, idnode_env, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("not the secret")
    r = _idnode(cli_node, idnode_env, "create", "88.118.8/CLI-bad", "--auth",
                "300:88.118.8/ADMIN", "--secret-file", str(bad), "--value", "1:URL:https://x")
    assert r.returncode == 1
    assert requests.get(f"{cli_node.api_url}88.118.8/CLI-bad", timeout=10).status_code == 404
