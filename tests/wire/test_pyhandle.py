"""The third-party ``pyhandle`` 1.5 REST client against a running node (handle.md §8).

pyhandle checks what our server must honour: the status/responseCode pairs (200+1, 404+100,
200+200), and that ``handle`` in the answer equals the identifier it asked for, byte for byte.
"""

from __future__ import annotations

import pytest
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.handleclient import PyHandleClient
from pyhandle.handleexceptions import GenericHandleError, HandleNotFoundException

pytestmark = pytest.mark.wire

LONG = "88.118.8/设备-压缩机/批次-2026-11/序列号-0001-温州工厂-二号生产线-质检合格-出口型号-αβγ"
TS = "2026-01-01T00:00:00Z"
DEMO1_VALUES = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/sn/demo-1"},
     "ttl": 86400, "timestamp": TS},
    {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "quality@example.com"},
     "ttl": 86400, "timestamp": TS},
    {"index": 100, "type": "HS_ADMIN",
     "data": {"format": "admin", "value": {"handle": "0.NA/88.118.8", "index": 200,
                                           "permissions": "011111111111"}},
     "ttl": 86400, "timestamp": TS},
]  # fmt: skip


@pytest.fixture(scope="module")
def client(node) -> RESTHandleClient:
    return RESTHandleClient(handle_server_url=node.base_url, HTTPS_verify=False)


def test_retrieve_handle_record_json(client):
    rec = client.retrieve_handle_record_json("88.118.8/demo-1")
    assert rec == {"responseCode": 1, "handle": "88.118.8/demo-1", "values": DEMO1_VALUES}


def test_retrieve_echoes_the_spelling_asked_for(client):
    # pyhandle raises GenericHandleError unless the answer names the handle exactly as asked.
    rec = client.retrieve_handle_record_json("88.118.8/DEMO-1")
    assert rec["handle"] == "88.118.8/DEMO-1"
    assert rec["values"] == DEMO1_VALUES


def test_hdl_scheme_is_stripped_by_the_client(client):
    rec = client.retrieve_handle_record_json("hdl:88.118.8/demo-1")
    assert rec["handle"] == "88.118.8/demo-1"
    assert rec["values"] == DEMO1_VALUES


def test_get_value_from_handle(client):
    assert client.get_value_from_handle("88.118.8/demo-1", "URL") == "https://example.com/sn/demo-1"
    assert client.get_value_from_handle("88.118.8/demo-1", "EMAIL") == "quality@example.com"
    assert client.get_value_from_handle("88.118.8/demo-1", "CHECKSUM") is None


def test_missing_handle(client):
    assert client.retrieve_handle_record_json("88.118.8/no-such-thing") is None
    assert client.retrieve_handle_record("88.118.8/no-such-thing") is None
    with pytest.raises(HandleNotFoundException):
        client.get_value_from_handle("88.118.8/no-such-thing", "URL")


def test_retrieve_handle_record_dict_form(client):
    rec = client.retrieve_handle_record("88.118.8/demo-1")
    assert rec == {
        "URL": "https://example.com/sn/demo-1",
        "EMAIL": "quality@example.com",
        "HS_ADMIN": str({"handle": "0.NA/88.118.8", "index": 200, "permissions": "011111111111"}),
    }


def test_non_public_value_is_not_returned(client):
    rec = client.retrieve_handle_record("88.118.8/demo-2")
    assert rec == {"URL": "https://example.com/sn/demo-2",
                   "PRODUCT.BATCH": '{"batch":"B-2026-11","line":3}'}  # fmt: skip
    assert client.get_value_from_handle("88.118.8/demo-2", "PRODUCT.COST") is None


def test_filtered_to_nothing_is_an_empty_record(client):
    # 200 + responseCode 200: pyhandle returns the body as is (hsresponses.is_handle_empty).
    rec = client.retrieve_handle_record_json("88.118.8/demo-2", indices=[3])
    assert rec == {"responseCode": 200, "values": [], "handle": "88.118.8/demo-2"}


def test_index_and_type_options(client):
    rec = client.retrieve_handle_record_json("88.118.8/demo-1", indices=[1, 100])
    assert [v["index"] for v in rec["values"]] == [1, 100]
    rec = client.retrieve_handle_record_json("88.118.8/demo-1", type=["URL", "EMAIL"])
    assert [v["type"] for v in rec["values"]] == ["URL", "EMAIL"]
    rec = client.retrieve_handle_record_json("88.118.8/demo-2", type="PRODUCT.")
    assert [v["type"] for v in rec["values"]] == ["PRODUCT.BATCH"]


def test_auth_option_is_harmless(client):
    # pyhandle's auth=True adds ?auth=true (authoritative read): same record.
    rec = client.retrieve_handle_record_json("88.118.8/demo-1", auth=True)
    assert rec["values"] == DEMO1_VALUES


def test_unicode_identifier_with_slashes(client):
    rec = client.retrieve_handle_record_json(LONG)
    assert rec["handle"] == LONG
    assert [v["data"]["value"] for v in rec["values"]] == ["https://example.com/设备/0001",
                                                           "Unicode suffix with slashes in it"]  # fmt: skip


def test_foreign_prefix_is_an_error(client):
    with pytest.raises(GenericHandleError) as info:
        client.retrieve_handle_record_json("99.1/x")
    assert "301" in str(info.value)


def test_pyhandle_client_facade(node):
    facade = PyHandleClient("rest").instantiate_for_read_access(
        handle_server_url=node.base_url, HTTPS_verify=False)  # fmt: skip
    assert facade.get_value_from_handle("88.118.8/demo-2", "URL") == "https://example.com/sn/demo-2"
    assert facade.retrieve_handle_record_json("88.118.8/demo-1")["values"] == DEMO1_VALUES


def test_username_handle_is_checked_on_instantiation(node):
    # instantiate_with_username_and_password first GETs the username's handle (handle.md §8).
    c = RESTHandleClient.instantiate_with_username_and_password(
        node.base_url, "300:88.118.8/demo-1", "secret", HTTPS_verify=False)  # fmt: skip
    assert c.get_value_from_handle("88.118.8/demo-1", "URL") == "https://example.com/sn/demo-1"
    with pytest.raises(HandleNotFoundException):
        RESTHandleClient.instantiate_with_username_and_password(
            node.base_url, "300:88.118.8/NO-SUCH-USER", "secret", HTTPS_verify=False)  # fmt: skip
