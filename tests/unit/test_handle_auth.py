"""Unit tests of ``resolver.protocols.handle.auth``: RC 402 challenges, HS_SECKEY and HS_PUBKEY
answers, the REST ``Authorization: Handle`` and ``Basic`` schemes.

Every answer form round-trips at each version band and fails when the nonce, the request
digest, the secret or the answer is changed, truncated or replaced by garbage.  The byte
layouts are pinned by known-answer vectors computed here independently with hashlib/hmac from
handle.md §5/§7.3 (and, for three of them, as hex literals), so neither the code nor these
tests can drift on their own.  RSA answers are checked with the ``cryptography`` primitives
directly as well as through the module, and the HS_PUBKEY bytes round-trip through
``resolver.values.decode_public_key``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding

from resolver.errors import MalformedRequest
from resolver.protocols.handle import auth as A
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codec import digest_of
from resolver.protocols.handle.message import (
    ChallengeAnswer, ChallengeBody, Envelope, HandleProtocolError, Header, Message,
)  # fmt: skip
from resolver.values import Reader, decode_public_key, encode_public_key

SECRET = b"password"
NONCE = bytes(range(16))
CNONCE = bytes(range(0x40, 0x50))
SALT = bytes(range(0xA0, 0xB0))
# Header + body of the resolution request of handle.md §3.5 (the challenged request here).
REQUEST = bytes.fromhex(
    "000000010000000019000000ffff00006955b90000000021"
    "0000001538382e3131382e382f534e2d323032362d30303031" "00000000" "00000000"
)  # fmt: skip
# handle.md §3.5: SHA-256 request digest of a 2.10 request, used as a fixed 32-byte input.
DIGEST_210 = bytes.fromhex("b0be5ee34b61b356843699d7d1a3504503be61ac6291ed0cf9b6336bd7a56204")

V20, V21, V26, V27, V211 = (2, 0), (2, 1), (2, 6), (2, 7), (2, 11)
VERSIONS = [V20, V21, V26, V27, V211]


def _i32(n: int) -> bytes:
    return struct.pack(">i", n)


def _str(b: bytes) -> bytes:
    return _i32(len(b)) + b


def _b64u(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(128, "big")).rstrip(b"=").decode()


def _unb64u(s: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")


def _digest(version) -> bytes:
    return digest_of(version, REQUEST)[1]


def _pbkdf2_answer(secret, data, salt, iterations, key_bits, *, password=None) -> bytes:
    """Independent PBKDF2 form: 0x22 + str salt + int4 iterations + int4 bits + str mac.
    (Below 8 bits a 1-byte key stands in: such an answer is only built to be refused.)"""
    key = hashlib.pbkdf2_hmac("sha1", password or secret, salt, iterations, max(key_bits // 8, 1))
    mac = hmac.new(key, data, hashlib.sha1).digest()
    return b"\x22" + _str(salt) + _i32(iterations) + _i32(key_bits) + _str(mac)


@pytest.fixture(scope="module")
def rsa_key():
    return A.generate_rsa_key(2048)


@pytest.fixture(scope="module")
def other_key():
    return A.generate_rsa_key(2048)


# -- RC 402 challenge ---------------------------------------------------------------------------
def test_new_nonce_is_16_fresh_bytes():
    a, b = A.new_nonce(), A.new_nonce()
    assert len(a) == len(b) == A.NONCE_SIZE == 16 and a != b


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
def test_challenge_round_trip(version):
    code, digest = digest_of(version, REQUEST)
    ch = A.decode_challenge(A.encode_challenge(version, digest, NONCE))
    assert ch == A.Challenge(NONCE, code, digest)
    assert A.challenge_is_for(ch, REQUEST)
    assert not A.challenge_is_for(ch, REQUEST[:-1] + b"\x01")


def test_challenge_layout_current_version():
    body = A.encode_challenge(V211, hashlib.sha256(REQUEST).digest(), NONCE)
    assert body == b"\x03" + hashlib.sha256(REQUEST).digest() + b"\0\0\0\x10" + NONCE


def test_challenge_layout_old_format():
    md5 = hashlib.md5(REQUEST).digest()
    assert A.encode_challenge(V20, md5, NONCE) == b"\0\0\0\x10" + md5 + b"\0\0\0\x10" + NONCE


def test_challenge_body_is_what_the_message_codec_writes():
    digest = digest_of(V211, REQUEST)
    hdr = Header(opcode=C.OpCode.CREATE_HANDLE, rc=402, opflags=C.FLAG_REQUEST_DIGEST)
    env = Envelope(session_id=7, request_id=9)
    wire = Message(env, hdr, ChallengeBody(NONCE), digest).to_wire()
    payload = wire[C.ENVELOPE_SIZE :]
    body_length = Header.from_wire(payload).body_length
    body = payload[C.HEADER_SIZE : C.HEADER_SIZE + body_length]
    assert body == A.encode_challenge(V211, digest[1], NONCE)
    decoded = Message.from_wire(wire)
    assert A.decode_challenge(body) == A.Challenge(decoded.body.nonce, *decoded.digest)


@pytest.mark.parametrize("version, size", [(V211, 20), (V26, 32), (V20, 20), (V27, 16)])
def test_encode_challenge_refuses_a_digest_of_the_wrong_size(version, size):
    with pytest.raises(ValueError):
        A.encode_challenge(version, bytes(size), NONCE)


def test_encode_challenge_refuses_an_empty_nonce():
    with pytest.raises(ValueError):
        A.encode_challenge(V211, bytes(32), b"")


GOOD_BODY = b"\x03" + bytes(32) + _str(NONCE)


@pytest.mark.parametrize("body", [
    b"", b"\x03", b"\x03" + bytes(32), b"\x03" + bytes(31),
    b"\x03" + bytes(32) + _i32(16) + NONCE[:15],
    b"\x09" + bytes(32) + _str(NONCE),
    GOOD_BODY + b"\0",
    b"\x03" + bytes(32) + _i32(0),
    b"\x03" + bytes(32) + _i32(-1) + NONCE,
    _str(bytes(20)) + _str(NONCE),
], ids=["empty", "code-only", "no-nonce", "short-digest", "short-nonce", "unknown-code",
        "trailing", "empty-nonce", "negative-length", "old-format-not-md5"])  # fmt: skip
def test_decode_challenge_refuses_malformed_bodies(body):
    assert A.decode_challenge(GOOD_BODY).nonce == NONCE
    with pytest.raises(HandleProtocolError):
        A.decode_challenge(body)


# -- HS_SECKEY ----------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
def test_secret_key_answer_round_trip(version):
    answer = A.secret_key_answer(SECRET, NONCE, _digest(version), version)
    assert A.verify_secret_key_answer(SECRET, NONCE, _digest(version), answer)
    assert A.verify_secret_key_answer(SECRET, NONCE, _digest(version), answer, version=version)


@pytest.mark.parametrize("version, first", [(V21, 0x02), (V26, 0x02), (V27, 0x22), (V211, 0x22)])
def test_secret_key_answer_code_by_version(version, first):
    assert A.secret_key_answer(SECRET, NONCE, _digest(version), version)[0] == first


def test_known_answer_sha1_form():
    d20 = hashlib.sha1(b"request").digest()
    answer = A.secret_key_answer(SECRET, NONCE, d20, V26)
    assert answer == b"\x02" + hashlib.sha1(SECRET + NONCE + d20 + SECRET).digest()
    assert answer.hex() == "021cf1ed8c5531b6e967e4dfa0d6b2657b7c2e6f10"


def test_known_answer_md5_old_form():
    d16 = hashlib.md5(b"request").digest()
    answer = A.secret_key_answer(SECRET, NONCE, d16, V20)
    assert answer == hashlib.md5(SECRET + NONCE + d16 + SECRET).digest()
    assert answer.hex() == "3886120eb187ca314bc15c7199af5eb3"


def test_known_answer_pbkdf2_form():
    answer = A.secret_key_answer(SECRET, NONCE, DIGEST_210, V211, salt=SALT)
    assert answer == _pbkdf2_answer(SECRET, NONCE + DIGEST_210, SALT, 10000, 160)
    assert answer.hex() == (
        "22" "00000010" "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" "00002710" "000000a0"
        "00000014" "6f4aefc3f50d3e53182d47069e02a907cea18e5b")  # fmt: skip


def test_pbkdf2_non_ascii_secret_is_widened_like_java():
    # Util.doPBKDF2: each byte becomes a char, the JCE encodes the chars as UTF-8.
    secret = "pässwörd".encode("utf-8")
    java_password = secret.decode("latin-1").encode("utf-8")
    answer = A.secret_key_answer(secret, NONCE, DIGEST_210, V211, salt=SALT)
    expected = _pbkdf2_answer(secret, NONCE + DIGEST_210, SALT, 10000, 160, password=java_password)
    assert answer == expected != _pbkdf2_answer(secret, NONCE + DIGEST_210, SALT, 10000, 160)
    assert A.verify_secret_key_answer(secret, NONCE, DIGEST_210, answer)


@pytest.mark.parametrize("version", [V20, V26, V211], ids=["md5", "sha1", "pbkdf2"])
@pytest.mark.parametrize("tamper", ["nonce", "digest", "secret", "answer"])
def test_tampered_secret_key_answer_fails(version, tamper):
    digest = _digest(version)
    answer = A.secret_key_answer(SECRET, NONCE, digest, version)
    secret, nonce = SECRET, NONCE
    if tamper == "nonce":
        nonce = b"\x01" + NONCE[1:]
    elif tamper == "digest":
        digest = bytes([digest[0] ^ 1]) + digest[1:]
    elif tamper == "secret":
        secret = b"Password"
    else:
        answer = answer[:-1] + bytes([answer[-1] ^ 0x80])
    assert not A.verify_secret_key_answer(secret, nonce, digest, answer)


@pytest.mark.parametrize("version", [V20, V26, V211], ids=["md5", "sha1", "pbkdf2"])
def test_truncated_or_extended_secret_key_answer_fails(version):
    answer = A.secret_key_answer(SECRET, NONCE, _digest(version), version)
    for cut in range(len(answer)):
        assert not A.verify_secret_key_answer(SECRET, NONCE, _digest(version), answer[:cut])
    assert not A.verify_secret_key_answer(SECRET, NONCE, _digest(version), answer + b"\0")


@pytest.mark.parametrize("answer", [
    b"\xff" * 21, b"\x22" + b"\xff" * 40, b"\x22" + _i32(0x7FFFFFFF) + b"x",
    b"\x22" + _i32(-5) + bytes(40), bytes(33), b"\x07" + bytes(20), bytes(1),
], ids=["ff", "pbkdf2-ff", "pbkdf2-huge-salt", "pbkdf2-negative", "zeros", "unknown-code", "one"])
def test_garbage_secret_key_answers_fail(answer):
    assert not A.verify_secret_key_answer(SECRET, NONCE, _digest(V211), answer)


def test_empty_secret_or_answer_authenticates_nobody():
    answer = A.secret_key_answer(b"", NONCE, _digest(V26), V26)
    assert not A.verify_secret_key_answer(b"", NONCE, _digest(V26), answer)
    assert not A.verify_secret_key_answer(SECRET, NONCE, _digest(V26), b"")


def test_version_selects_raw_md5_or_coded_forms():
    raw = A.secret_key_answer(SECRET, NONCE, _digest(V20), V20)
    coded = A.secret_key_answer(SECRET, NONCE, _digest(V26), V26)
    assert not A.verify_secret_key_answer(SECRET, NONCE, _digest(V20), raw, version=V211)
    assert not A.verify_secret_key_answer(SECRET, NONCE, _digest(V26), coded, version=V20)


@pytest.mark.parametrize("code, mac", [
    (0x03, lambda s, d: hashlib.sha256(s + d + s).digest()),
    (0x12, lambda s, d: hmac.new(s, d, hashlib.sha1).digest()),
    (0x13, lambda s, d: hmac.new(s, d, hashlib.sha256).digest()),
], ids=["sha256", "hmac-sha1", "hmac-sha256"])  # fmt: skip
def test_other_codes_the_reference_verifier_takes(code, mac):
    answer = bytes([code]) + mac(SECRET, NONCE + DIGEST_210)
    assert A.verify_secret_key_answer(SECRET, NONCE, DIGEST_210, answer)
    assert not A.verify_secret_key_answer(b"other", NONCE, DIGEST_210, answer)


@pytest.mark.parametrize("code", [0x00, 0x01])
def test_coded_md5_is_refused(code):
    answer = bytes([code]) + hashlib.md5(SECRET + NONCE + DIGEST_210 + SECRET).digest()
    assert not A.verify_secret_key_answer(SECRET, NONCE, DIGEST_210, answer)


def test_iteration_bounds():
    data = NONCE + DIGEST_210
    assert A.verify_secret_key_answer(SECRET, NONCE, DIGEST_210,
                                      _pbkdf2_answer(SECRET, data, SALT, 1, 160))  # fmt: skip
    top = A.MAX_PBKDF2_ITERATIONS
    assert A.verify_secret_key_answer(SECRET, NONCE, DIGEST_210,
                                      _pbkdf2_answer(SECRET, data, SALT, top, 160))  # fmt: skip
    over = _pbkdf2_answer(SECRET, data, SALT, top + 1, 160)  # a right answer, but too dear
    start = time.perf_counter()
    assert not A.verify_secret_key_answer(SECRET, NONCE, DIGEST_210, over)
    for n in (0, -1, 2**31 - 1):
        forged = b"\x22" + _str(SALT) + _i32(n) + _i32(160) + _str(bytes(20))
        assert not A.verify_secret_key_answer(SECRET, NONCE, DIGEST_210, forged)
    assert time.perf_counter() - start < 0.1  # refused before any PBKDF2 work


@pytest.mark.parametrize("iterations", [0, -1, A.MAX_PBKDF2_ITERATIONS + 1])
def test_secret_key_answer_refuses_out_of_bounds_iterations(iterations):
    with pytest.raises(ValueError):
        A.secret_key_answer(SECRET, NONCE, DIGEST_210, V211, iterations=iterations)


def test_secret_key_answer_refuses_an_empty_salt():
    with pytest.raises(ValueError):
        A.secret_key_answer(SECRET, NONCE, DIGEST_210, V211, salt=b"")


@pytest.mark.parametrize("bits, ok", [(256, True), (168, True), (0, False), (4, False),
                                      (A.MAX_PBKDF2_KEY_BITS + 8, False)])  # fmt: skip
def test_pbkdf2_key_length_bounds(bits, ok):
    answer = _pbkdf2_answer(SECRET, NONCE + DIGEST_210, SALT, 10, bits)
    assert A.verify_secret_key_answer(SECRET, NONCE, DIGEST_210, answer) is ok


def test_pbkdf2_empty_salt_fails():
    key = hashlib.pbkdf2_hmac("sha1", SECRET, b"", 10, 20)
    mac = hmac.new(key, NONCE + DIGEST_210, hashlib.sha1).digest()
    answer = b"\x22" + _str(b"") + _i32(10) + _i32(160) + _str(mac)
    assert not A.verify_secret_key_answer(SECRET, NONCE, DIGEST_210, answer)


def test_answer_travels_in_an_oc_200_body():
    answer = A.secret_key_answer(SECRET, NONCE, _digest(V211), V211)
    body = ChallengeAnswer(A.SECKEY_TYPE, b"88.118.8/ADMIN", 300, answer).to_wire()
    back = ChallengeAnswer.from_reader(Reader(body))
    assert back.auth_type == b"HS_SECKEY" and back.key_index == 300
    assert A.verify_challenge_answer(back.auth_type, SECRET, NONCE, _digest(V211), back.answer)


def test_verify_password():
    assert A.verify_password(b"secret", b"secret")
    assert not A.verify_password(b"secret", b"Secret")
    assert not A.verify_password(b"", b"")


# -- HS_PUBKEY ----------------------------------------------------------------------------------
@pytest.mark.parametrize("alg, wire, h", [("SHA256", b"SHA-256", hashes.SHA256),
                                          ("SHA1", b"SHA1", hashes.SHA1)])  # fmt: skip
def test_public_key_answer_layout_and_round_trip(rsa_key, alg, wire, h):
    digest = _digest(V211)
    answer = A.public_key_answer(rsa_key, NONCE, digest, alg)
    r = Reader(answer)
    assert r.blob() == wire
    sig = r.blob()
    assert r.at_end() and len(sig) == 256
    rsa_key.public_key().verify(sig, NONCE + digest, padding.PKCS1v15(), h())  # raises if wrong
    assert A.verify_public_key_answer(A.rsa_public_key_bytes(rsa_key), NONCE, digest, answer)


@pytest.mark.parametrize("alg_id, h", [
    (b"SHA256", hashes.SHA256), (b"\x03", hashes.SHA256), (b"SHA-1", hashes.SHA1),
    (b"\x02", hashes.SHA1),
])  # fmt: skip
def test_public_key_answer_alias_ids_are_accepted(rsa_key, alg_id, h):
    sig = rsa_key.sign(NONCE + DIGEST_210, padding.PKCS1v15(), h())
    answer = _str(alg_id) + _str(sig)
    assert A.verify_public_key_answer(A.rsa_public_key_bytes(rsa_key), NONCE, DIGEST_210, answer)


def test_public_key_answer_with_the_wrong_key_fails(rsa_key, other_key):
    answer = A.public_key_answer(rsa_key, NONCE, DIGEST_210)
    assert not A.verify_public_key_answer(A.rsa_public_key_bytes(other_key), NONCE, DIGEST_210,
                                          answer)  # fmt: skip


@pytest.mark.parametrize("tamper", ["nonce", "digest", "signature", "alg"])
def test_tampered_public_key_answer_fails(rsa_key, tamper):
    key_data = A.rsa_public_key_bytes(rsa_key)
    nonce, digest = NONCE, DIGEST_210
    answer = A.public_key_answer(rsa_key, nonce, digest)
    if tamper == "nonce":
        nonce = NONCE[::-1]
    elif tamper == "digest":
        digest = DIGEST_210[::-1]
    elif tamper == "signature":
        answer = answer[:-1] + bytes([answer[-1] ^ 1])
    else:
        answer = _str(b"SHA1") + answer[4 + len(b"SHA-256") :]
    assert not A.verify_public_key_answer(key_data, nonce, digest, answer)


def test_md5_signatures_are_refused(rsa_key):
    sig = rsa_key.sign(NONCE + DIGEST_210, padding.PKCS1v15(), hashes.MD5())
    answer = _str(b"MD5") + _str(sig)
    assert not A.verify_public_key_answer(A.rsa_public_key_bytes(rsa_key), NONCE, DIGEST_210,
                                          answer)  # fmt: skip


def test_truncated_and_garbage_public_key_answers_fail(rsa_key):
    key_data = A.rsa_public_key_bytes(rsa_key)
    answer = A.public_key_answer(rsa_key, NONCE, DIGEST_210)
    for cut in range(0, len(answer), 7):
        assert not A.verify_public_key_answer(key_data, NONCE, DIGEST_210, answer[:cut])
    for junk in (answer + b"\0", b"\xff" * 300, _i32(-1) + b"SHA1", b""):
        assert not A.verify_public_key_answer(key_data, NONCE, DIGEST_210, junk)


def test_dsa_weak_and_garbage_keys_fail(rsa_key):
    answer = A.public_key_answer(rsa_key, NONCE, DIGEST_210)
    dsa = encode_public_key({"kty": "DSA", "q": _b64u(5), "p": _b64u(7), "g": _b64u(2),
                             "y": _b64u(3)})  # fmt: skip
    weak = _str(b"RSA_PUB_KEY") + b"\0\0" + _str(b"\x01\x00\x01") + _str(b"\xc5" * 64) + _i32(0)
    for key_data in (dsa, weak, b"", b"\xff" * 40, _str(b"EC_PUB_KEY") + b"\0\0"):
        assert not A.verify_public_key_answer(key_data, NONCE, DIGEST_210, answer)


def test_hs_pubkey_bytes_match_the_reference_layout(rsa_key):
    data = A.rsa_public_key_bytes(rsa_key)
    nums = rsa_key.public_key().public_numbers()
    assert data.startswith(_str(b"RSA_PUB_KEY") + b"\0\0" + _str(b"\x01\x00\x01"))
    # BigInteger.toByteArray: a 2048-bit modulus gets a leading 0 sign byte.
    assert data[4 + 11 + 2 + 7 :] == _str(b"\0" + nums.n.to_bytes(256, "big")) + b"\0\0\0\0"
    jwk = decode_public_key(data)
    assert jwk["kty"] == "RSA" and _unb64u(jwk["n"]) == nums.n and _unb64u(jwk["e"]) == nums.e
    assert decode_public_key(encode_public_key(jwk)) == jwk
    assert A.rsa_public_key_bytes(rsa_key.public_key()) == data


def test_private_key_pem_and_der_round_trip(rsa_key):
    want = rsa_key.private_numbers()
    pem = A.private_key_pem(rsa_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert A.load_private_key(pem).private_numbers() == want
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        der = rsa_key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        assert A.load_private_key(der).private_numbers() == want
    pkcs1 = rsa_key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())  # fmt: skip
    assert A.load_private_key(b"\n" + pkcs1).private_numbers() == want


def test_load_private_key_refuses_garbage_and_non_rsa_keys():
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())  # fmt: skip
    bad_pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    for data in (b"", b"garbage", bad_pem, ed):
        with pytest.raises(ValueError):
            A.load_private_key(data)


def test_default_signature_alg():
    assert [A.default_signature_alg(v) for v in (V21, V26, V27, V211)] == \
        ["SHA1", "SHA1", "SHA256", "SHA256"]  # fmt: skip


def test_signing_helpers_refuse_unsupported_algorithms(rsa_key):
    for alg in ("MD5", "SHA512", "HMAC-SHA1"):
        with pytest.raises(ValueError):
            A.public_key_answer(rsa_key, NONCE, DIGEST_210, alg)
    with pytest.raises(ValueError):
        A.public_key_answer(ed25519.Ed25519PrivateKey.generate(), NONCE, DIGEST_210)


def test_verify_challenge_answer_dispatches_on_auth_type(rsa_key):
    sec = A.secret_key_answer(SECRET, NONCE, DIGEST_210, V211)
    pub = A.public_key_answer(rsa_key, NONCE, DIGEST_210)
    key_data = A.rsa_public_key_bytes(rsa_key)
    assert A.verify_challenge_answer(b"HS_SECKEY", SECRET, NONCE, DIGEST_210, sec)
    assert A.verify_challenge_answer(b"HS_PUBKEY", key_data, NONCE, DIGEST_210, pub)
    assert not A.verify_challenge_answer(b"HS_PUBKEY", SECRET, NONCE, DIGEST_210, sec)
    assert not A.verify_challenge_answer(b"HS_SECKEY", key_data, NONCE, DIGEST_210, pub)
    assert not A.verify_challenge_answer(b"HS_OTHER", SECRET, NONCE, DIGEST_210, sec)


# -- REST: Authorization: Handle ----------------------------------------------------------------
def test_parse_authorization_header_spec_example():
    value = ('Handle sessionId="s1", id="300:200/23", type="HS_PUBKEY", cnonce="Y24=", '
             'alg="SHA256", signature="c2ln"')  # fmt: skip
    assert A.parse_authorization_header(value) == {
        "sessionId": "s1", "id": "300:200/23", "type": "HS_PUBKEY", "cnonce": "Y24=",
        "alg": "SHA256", "signature": "c2ln"}  # fmt: skip


def test_parse_authorization_header_is_tolerant_of_spacing_case_and_tokens():
    value = '  handle   SESSIONID = "x" ,id=300%3A88.118.8%2FA+B ,CNonce=abc,  '
    assert A.parse_authorization_header(value) == {
        "sessionId": "x", "id": "300:88.118.8/A+B", "cnonce": "abc"}  # fmt: skip


def test_parse_authorization_header_unescapes_and_keeps_unknown_and_last():
    value = r'Handle signature="a\"b\\c", foo="bar", alg="SHA1", alg="SHA256"'
    assert A.parse_authorization_header(value) == {
        "signature": 'a"b\\c', "foo": "bar", "alg": "SHA256"}  # fmt: skip


@pytest.mark.parametrize("value", [
    "Basic abc", "Handle", "Handle   ", "Handle a", 'Handle a="1" b="2"', 'Handle a="1",, b=',
    'Handle a="unterminated', "Handle =x", 'Handle a="1" garbage', "Handle a=1, " + "x" * 9000,
    'Handle id="%ff"', "Handlea=1", None,
], ids=["basic", "bare", "blank", "no-value", "no-comma", "empty-value", "open-quote", "no-key",
        "trailing-garbage", "too-long", "id-not-utf8", "no-space", "none"])  # fmt: skip
def test_parse_authorization_header_refuses_garbage(value):
    with pytest.raises(MalformedRequest):
        A.parse_authorization_header(value)


def test_format_and_parse_authorization_header_round_trip():
    params = {"sessionId": "abc", "id": "300:88.118.8/50%é", "type": "HS_SECKEY",
              "cnonce": base64.b64encode(CNONCE).decode(), "alg": "SHA1", "signature": 'q"\\'}
    header = A.format_authorization_header(params)
    assert header.isascii() and header.startswith('Handle sessionId="abc", id="300:88.118.8/50%25')
    assert A.parse_authorization_header(header) == params


@pytest.mark.parametrize("params", [{"alg": "a\r\nb"}, {"alg": "é"}, {"bad key": "x"}])
def test_format_authorization_header_refuses_unsendable_values(params):
    with pytest.raises(ValueError):
        A.format_authorization_header(params)


@pytest.mark.parametrize("alg, aliases, expected", [
    ("SHA1", ("sha-1", "SHA"), lambda s, d: hashlib.sha1(s + d + s).digest()),
    ("SHA256", ("SHA-256", "sha2"), lambda s, d: hashlib.sha256(s + d + s).digest()),
    ("HMAC-SHA1", ("hmacsha1",), lambda s, d: hmac.new(s, d, hashlib.sha1).digest()),
    ("HMAC-SHA256", ("HMAC_SHA256",), lambda s, d: hmac.new(s, d, hashlib.sha256).digest()),
], ids=["sha1", "sha256", "hmac-sha1", "hmac-sha256"])  # fmt: skip
def test_rest_secret_signature_known_answers(alg, aliases, expected):
    sig = A.rest_secret_signature(SECRET, NONCE, CNONCE, alg)
    assert sig == expected(SECRET, NONCE + CNONCE)
    for name in (alg, *aliases):
        assert A.verify_rest_signature(SECRET, NONCE, CNONCE, name, sig)
    assert not A.verify_rest_signature(SECRET, CNONCE, NONCE, alg, sig)


def test_rest_sha1_is_the_native_answer_with_cnonce_for_digest():
    native = A.secret_key_answer(SECRET, NONCE, CNONCE, V26)
    assert native == b"\x02" + A.rest_secret_signature(SECRET, NONCE, CNONCE, "SHA1")


def test_rest_pbkdf2_signature():
    sig = A.rest_secret_signature(SECRET, NONCE, CNONCE, "PBKDF2-HMAC-SHA1", salt=SALT)
    blob = _pbkdf2_answer(SECRET, NONCE + CNONCE, SALT, 10000, 160)[1:]
    assert _str(sig) == blob[-24:]
    kw = dict(salt=SALT, iterations=10000, length=160)
    assert A.verify_rest_signature(SECRET, NONCE, CNONCE, "PBKDF2-HMAC-SHA1", sig, **kw)
    assert A.verify_rest_signature(SECRET, NONCE, CNONCE, "PBKDF2WithHmacSHA1", sig, **kw)
    assert A.verify_rest_signature(SECRET, NONCE, CNONCE, "PBKDF2-HMAC-SHA1", blob)  # whole blob
    assert not A.verify_rest_signature(b"other", NONCE, CNONCE, "PBKDF2-HMAC-SHA1", sig, **kw)
    assert not A.verify_rest_signature(SECRET, NONCE, CNONCE, "PBKDF2-HMAC-SHA1", sig,
                                       salt=SALT, iterations=10001, length=160)  # fmt: skip
    with pytest.raises(ValueError):
        A.rest_secret_signature(SECRET, NONCE, CNONCE, "PBKDF2-HMAC-SHA1")


@pytest.mark.parametrize("alg, kw", [
    ("MD5", {}), ("SHA512", {}), ("", {}), (None, {}),
    ("PBKDF2-HMAC-SHA1", {"salt": SALT, "iterations": 0, "length": 160}),
    ("PBKDF2-HMAC-SHA1", {"salt": SALT, "iterations": 2**40, "length": 160}),
    ("PBKDF2-HMAC-SHA1", {"salt": SALT, "iterations": "10000", "length": 160}),
], ids=["md5", "sha512", "empty", "none", "zero-iterations", "huge-iterations", "str-iterations"])
def test_rest_secret_signature_refusals(alg, kw):
    sig = A.rest_secret_signature(SECRET, NONCE, CNONCE, "SHA1")
    assert A.verify_rest_signature(SECRET, NONCE, CNONCE, "SHA1", sig)
    assert not A.verify_rest_signature(SECRET, NONCE, CNONCE, alg, sig, **kw)


@pytest.mark.parametrize("alg, h", [("SHA256", hashes.SHA256), ("SHA-1", hashes.SHA1)])
def test_rest_public_key_signature(rsa_key, other_key, alg, h):
    sig = A.rest_public_key_signature(rsa_key, NONCE, CNONCE, alg)
    rsa_key.public_key().verify(sig, NONCE + CNONCE, padding.PKCS1v15(), h())
    key_data = A.rsa_public_key_bytes(rsa_key)
    assert A.verify_rest_public_key_signature(key_data, NONCE, CNONCE, alg, sig)
    assert not A.verify_rest_public_key_signature(A.rsa_public_key_bytes(other_key), NONCE,
                                                  CNONCE, alg, sig)  # fmt: skip
    assert not A.verify_rest_public_key_signature(key_data, CNONCE, NONCE, alg, sig)
    assert not A.verify_rest_public_key_signature(key_data, NONCE, CNONCE, "HMAC-SHA1", sig)


# -- Basic and identities -----------------------------------------------------------------------
def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_parse_basic_pyhandle_header():
    # handle.md §8: what pyhandle sends for "300:88.118.8/USER" / "secret".
    assert A.parse_basic("Basic MzAwJTNBODguMTE4LjgvVVNFUjpzZWNyZXQ=") == \
        ("300:88.118.8/USER", b"secret")  # fmt: skip


@pytest.mark.parametrize("raw, expected", [
    (b"88.118.8/ADMIN:pw", ("0:88.118.8/ADMIN", b"pw")),
    (b"300%3AX/Y:a:b\xff", ("300:X/Y", b"a:b\xff")),
    (b"300:88.118.8/ADMIN:pw", ("0:300", b"88.118.8/ADMIN:pw")),
    (b"300%3A88.118.8/A+B%2FC:", ("300:88.118.8/A+B/C", b"")),
    (b"foo%3Abar:pw", ("0:foo:bar", b"pw")),
    ("300%3A88.118.8/测试:pw".encode(), ("300:88.118.8/测试", b"pw")),
], ids=["no-index", "raw-password", "unencoded-colon", "plus-kept", "non-digit-index", "utf8"])
def test_parse_basic_cases(raw, expected):
    assert A.parse_basic(_basic(raw)) == expected


def test_parse_basic_scheme_case_and_missing_padding():
    token = base64.b64encode(b"300%3AX/Y:pw").decode().rstrip("=")
    assert A.parse_basic(f"  basic   {token} ") == ("300:X/Y", b"pw")


@pytest.mark.parametrize("value", [
    "Basic !!!", "Basic", "Basic a b", "Bearer eHl6", _basic(b"no-colon"), _basic(b"\xff:pw"),
    _basic(b"300%3A:pw"), _basic(b"99999999999%3Ax:pw"), _basic(b":pw"), "Basic é", None,
    _basic(b"%ff%fe:pw"),
], ids=["not-base64", "no-token", "three-parts", "bearer", "no-colon", "user-not-utf8",
        "empty-handle", "index-overflow", "empty-user", "non-ascii", "none", "pct-not-utf8"])
def test_parse_basic_refuses_garbage(value):
    with pytest.raises(MalformedRequest):
        A.parse_basic(value)


@pytest.mark.parametrize("text, expected", [
    ("300:88.118.8/ADMIN", (300, "88.118.8/ADMIN")), ("88.118.8/ADMIN", (0, "88.118.8/ADMIN")),
    ("0:x/y", (0, "x/y")), ("x:300:y", (0, "x:300:y")), ("２:x", (0, "２:x")),
])  # fmt: skip
def test_parse_identity(text, expected):
    assert A.parse_identity(text) == expected
