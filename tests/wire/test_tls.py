"""HTTPS: ``[http] tls_cert``/``tls_key`` serve the REST API over TLS, credentials included.

A self-signed certificate for 127.0.0.1 is made for the test; the client checks it against that
certificate (no verification switched off), and pyhandle writes over HTTPS as it would against a
Handle.net server (handle.md §7.3: authenticated calls must be HTTPS).
"""

from __future__ import annotations

import datetime
import ipaddress

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhandle.client.resthandleclient import RESTHandleClient

pytestmark = pytest.mark.wire

SECRET = "tls-secret-8"


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_node(start_node, tmp_path_factory, load_lines):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(tmp)
    lines = [
        {"handle": "0.NA/88.118.8", "values": [
            {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                "handle": "0.NA/88.118.8", "index": 200, "permissions": "011111111111"}}},
            {"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": [
                {"handle": "88.118.8/ADMIN", "index": 300}]}}]},
        {"handle": "88.118.8/ADMIN", "values": [
            {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
                "handle": "0.NA/88.118.8", "index": 200, "permissions": "011111111111"}}},
            {"index": 300, "type": "HS_SECKEY", "data": SECRET, "permissions": "1100"}]},
    ]  # fmt: skip
    data = load_lines(tmp / "data", lines)
    node = start_node(data=data, config_text=f'[http]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    node.cert = str(cert)
    return node


def test_banner_and_resolution_over_https(tls_node):
    assert tls_node.tls and tls_node.banner.startswith("idnode") and "https://" in tls_node.banner
    r = requests.get(f"{tls_node.base_url}/api/handles/0.NA/88.118.8", verify=tls_node.cert,
                     timeout=10)  # fmt: skip
    assert r.status_code == 200 and r.json()["handle"] == "0.NA/88.118.8"


def test_plain_http_is_not_served_on_the_tls_port(tls_node):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_node.port}/api/handles/0.NA/88.118.8", timeout=5)


def test_pyhandle_writes_over_https(tls_node):
    client = RESTHandleClient.instantiate_with_username_and_password(
        tls_node.base_url, "300:88.118.8/ADMIN", SECRET, HTTPS_verify=tls_node.cert)
    assert client.register_handle("88.118.8/over-tls", "https://example.com/tls") == \
        "88.118.8/over-tls"
    rec = requests.get(f"{tls_node.base_url}/api/handles/88.118.8/over-tls",
                       verify=tls_node.cert, timeout=10).json()  # fmt: skip
    assert [v["data"]["value"] for v in rec["values"] if v["type"] == "URL"] == \
        ["https://example.com/tls"]
