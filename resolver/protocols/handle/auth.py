"""Handle authentication, sans-IO: RC 402 challenges, HS_SECKEY and HS_PUBKEY answers, and the
REST ``Authorization: Handle`` / ``Basic`` schemes.

Owns the cryptography of proving an identity ``index:handle`` (handle.md §5, §7.3; RFC 3652
§3.5).  Pure functions on bytes: no sockets, store or config — the server verifies with them,
our own client (``resolver.upstream.client``) answers with them, and the REST front-end parses
its headers with them.  The CNRI reference classes each layout was read from are named below.

Error contract.  Bytes from a peer never make a ``verify_*`` function raise: anything
malformed, truncated, unknown or out of bounds is simply ``False``.  Decoders of peer input
(``decode_challenge``, ``parse_authorization_header``, ``parse_basic``, ``parse_identity``)
raise ``MalformedRequest`` (``HandleProtocolError`` for wire bytes).  Local misuse — a digest
of the wrong size handed to ``encode_challenge``, an unsupported key or algorithm handed to a
signing helper, an unreadable key file — raises ``ValueError``: that is a bug or bad local
configuration, never a client's doing.

Layouts (all integers big-endian; ``str`` = int4 length + bytes, as ``message._s``)::

    RC 402 challenge body (ChallengeResponse; Encoder.encodeChallengeResponse; handle.md §3.4)
      request digest, exactly as for RD (message.py), by the reply's version:
        >= 2.7      u8 3 + SHA-256 (32 B)
        2.1 .. 2.6  u8 2 + SHA-1 (20 B)
        <  2.1      int4 16 + MD5 (16 B)      "old format": the length's high byte, 0, is the code
      str nonce     16 random bytes
      The reply header must carry RD (0x00800000): the reference always returns the digest with
      a challenge, and decoders only look for a digest when the flag is set.

    HS_SECKEY answer — the ``answer`` of OC 200 (SecretKeyAuthenticationInfo.authenticate,
    Util.doMac, Util.doPbkdf2HmacSHA1, Util.constructPbkdf2Encoding)
      data = nonce || request digest          (raw digest bytes: no code byte, no length)
      version >= 2.7:  u8 0x22, then the PBKDF2 blob
                         str  salt            16 random bytes
                         int4 iterations      10000
                         int4 key length      160 (bits)
                         str  mac             HMAC-SHA1(key, data), 20 bytes
                       key = PBKDF2-HMAC-SHA1(secret, salt, iterations, key length / 8)
      2.1 .. 2.6:      u8 0x02 + SHA-1(secret || data || secret)
      <  2.1:          MD5(secret || data || secret)        16 bytes, no code byte
      ``version`` is the lower of the challenge's version and the version it suggests.  The
      reference verifier (HandleServer.verifyChallenge) also takes u8 0x03 + SHA-256(secret ||
      data || secret), 0x12 + HMAC-SHA1(secret, data) and 0x13 + HMAC-SHA256(secret, data).

    HS_PUBKEY answer (PublicKeyAuthenticationInfo.authenticate, Util.getHashAlgIdFromSigId)
      str  hash algorithm   "SHA-256" (>= 2.7) or "SHA1"; verifiers also take "SHA256",
                            "SHA-1" and the one-byte codes 3 and 2 (Util.getSigIdFromHashAlgId)
      str  signature        RSASSA-PKCS1-v1_5 with that hash over data

    HS_PUBKEY value data, RSA (Util.getBytesFromPublicKey; resolver.values)
      str "RSA_PUB_KEY", u16 flags 0, str public exponent, str modulus, int4 0
      Integers as Java's BigInteger.toByteArray: two's complement, so a modulus whose top bit
      is set carries a leading 0 byte (a 2048-bit modulus is 257 bytes).

    REST (handle.md §7.3; StandardHandleAuthenticator, HandleAuthorizationHeader)
      Authorization: Handle sessionId="..", id="300:88.118.8/ADMIN", type="HS_SECKEY",
                     cnonce="<b64>", alg="SHA1", signature="<b64>"
      The signed data is nonce || cnonce (nonce: the server's, from WWW-Authenticate).  The
      signature is the HS_SECKEY answer above without its code byte, with cnonce in place of
      the request digest: SHA1 = SHA-1(secret || nonce || cnonce || secret), SHA256 likewise,
      HMAC-SHA1 / HMAC-SHA256 = HMAC(secret, nonce || cnonce), PBKDF2-HMAC-SHA1 = the mac alone
      with ``salt`` (b64), ``iterations`` and ``length`` (bits) as parameters — or, when they
      are absent, the whole PBKDF2 blob as the signature.  HS_PUBKEY: the raw RSA signature
      over nonce || cnonce, alg SHA1 or SHA256.
      Authorization: Basic base64(user ":" password), user = percent-encoded "index:handle".
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
import secrets
import struct
from urllib.parse import quote, unquote_to_bytes

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from resolver.errors import InvalidValue, MalformedRequest
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import DIGEST_SIZES, HandleProtocolError, _s
from resolver.values import Reader, decode_public_key

#: Bytes of a challenge nonce (Common.CHALLENGE_NONCE_SIZE).
NONCE_SIZE = 16
#: ``auth_type`` of an OC 200 answer (Common.SECRET_KEY_TYPE / PUBLIC_KEY_TYPE).
SECKEY_TYPE = b"HS_SECKEY"
PUBKEY_TYPE = b"HS_PUBKEY"

# First byte of an HS_SECKEY answer (Common.HASH_CODE_*).  MD5 (0, 1) exists only as the
# pre-2.1 raw answer: no reference client writes it with a code byte, so this node refuses it.
CODE_SHA1 = C.HASH_SHA1
CODE_SHA256 = C.HASH_SHA256
CODE_HMAC_SHA1 = 0x12
CODE_HMAC_SHA256 = 0x13
CODE_PBKDF2_HMAC_SHA1 = 0x22

#: What the reference client writes (Util.doPbkdf2HmacSHA1).
PBKDF2_ITERATIONS = 10000
PBKDF2_KEY_BITS = 160
PBKDF2_SALT_SIZE = 16
# The PBKDF2 parameters travel inside the answer, chosen by the peer, and a verifier must run
# PBKDF2 with them before it can tell whether the answer is right: an unbounded iteration
# count (int4: up to 2^31) or key length (each 20 bytes of key is another full run) would let
# an unauthenticated peer spend minutes of our CPU per attempt.  100,000 iterations is 10x the
# reference client's fixed 10000 (no reference client sends another count) and costs about
# 0.1 s of one core; 1,000,000 would let every failed attempt cost a full second.
MAX_PBKDF2_ITERATIONS = 100_000
MAX_PBKDF2_KEY_BITS = 512
MAX_PBKDF2_SALT = 1024
# RSA moduli accepted from HS_PUBKEY values: below 1024 bits a key can be factored, so a
# signature proves nothing; above 16384 bits verification is a CPU sink and no real key is.
MIN_RSA_BITS = 1024
MAX_RSA_BITS = 16384
#: Longest ``Authorization`` header value parsed (a real one is a few hundred bytes).
MAX_HEADER = 8192

_I32 = struct.Struct(">i")
_DIGEST_LEN = {C.HASH_MD5_OLD: 16, **DIGEST_SIZES}
_DIGEST_HASH = {C.HASH_MD5_OLD: hashlib.md5, C.HASH_MD5: hashlib.md5, C.HASH_SHA1: hashlib.sha1,
                C.HASH_SHA256: hashlib.sha256}  # fmt: skip
_SIG_HASH = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256}
# Algorithm id written into an HS_PUBKEY answer (Common.HASH_ALG_SHA1 / HASH_ALG_SHA256) and the
# ids a verifier accepts, compared exactly as Util.getSigIdFromHashAlgId does.  MD5 is refused.
_WIRE_ALG = {"SHA1": b"SHA1", "SHA256": b"SHA-256"}
_WIRE_ALG_IN = {b"SHA1": "SHA1", b"SHA-1": "SHA1", b"\x02": "SHA1",
                b"SHA-256": "SHA256", b"SHA256": "SHA256", b"\x03": "SHA256"}  # fmt: skip
# REST ``alg`` names, compared ignoring case and punctuation (Util.equalsIgnoreCaseAndPunctuation,
# StandardHandleAuthenticator.constructSignedResponse).  MD5 is refused.
_REST_SECRET = {"SHA": CODE_SHA1, "SHA1": CODE_SHA1, "SHA2": CODE_SHA256, "SHA256": CODE_SHA256,
                "HMACSHA1": CODE_HMAC_SHA1, "HMACSHA256": CODE_HMAC_SHA256,
                "PBKDF2HMACSHA1": CODE_PBKDF2_HMAC_SHA1,
                "PBKDF2WITHHMACSHA1": CODE_PBKDF2_HMAC_SHA1}  # fmt: skip
_REST_PUBLIC = {"SHA": "SHA1", "SHA1": "SHA1", "SHA2": "SHA256", "SHA256": "SHA256"}


def _alg_key(alg: object) -> str:
    return re.sub(r"[^A-Z0-9]", "", alg.upper()) if isinstance(alg, str) else ""


# ---------------------------------------------------------------------------------------------
# The RC 402 challenge


@dataclasses.dataclass(frozen=True, slots=True)
class Challenge:
    """A decoded RC 402 body: the nonce and the digest of the challenged request."""

    nonce: bytes
    digest_code: int  # constants.HASH_*: 0 old-format MD5, 2 SHA-1, 3 SHA-256 (1 MD5)
    digest: bytes


def new_nonce() -> bytes:
    """16 bytes from the OS CSPRNG: a challenge nonce, a REST cnonce or a PBKDF2 salt."""
    return secrets.token_bytes(NONCE_SIZE)


def _digest_code(version: tuple[int, int]) -> int:
    if version < (2, 1):
        return C.HASH_MD5_OLD
    return C.HASH_SHA256 if version >= (2, 7) else C.HASH_SHA1


def encode_challenge(version: tuple[int, int], request_digest: bytes, nonce: bytes) -> bytes:
    """The body of an RC 402 reply at ``version``: the request digest as for RD, then the nonce.

    ``request_digest`` is the raw digest of the challenged request's header and body, by
    version (``codec.digest_of(version, ...)[1]``); its size is checked against the version.
    The reply header must have RD set (see the module docstring).
    """
    code = _digest_code(version)
    if len(request_digest) != _DIGEST_LEN[code]:
        raise ValueError(f"a {version[0]}.{version[1]} challenge needs a {_DIGEST_LEN[code]}-byte"
                         f" request digest, not {len(request_digest)}")  # fmt: skip
    if not nonce:
        raise ValueError("empty challenge nonce")
    head = _s(request_digest) if code == C.HASH_MD5_OLD else bytes((code,)) + request_digest
    return head + _s(nonce)


def decode_challenge(body: bytes) -> Challenge:
    """Inverse of ``encode_challenge`` for any version; raises ``HandleProtocolError``."""
    r = Reader(bytes(body))
    try:
        code = r.u8()
        if code == C.HASH_MD5_OLD:
            r.pos -= 1
            digest = r.blob()
            if len(digest) != 16:
                raise HandleProtocolError("old-format challenge digest is not an MD5")
        elif code in DIGEST_SIZES:
            digest = r.raw(DIGEST_SIZES[code])
        else:
            raise HandleProtocolError(f"unknown request-digest hash code {code}")
        nonce = r.blob()
    except InvalidValue:
        raise HandleProtocolError("truncated challenge") from None
    if not r.at_end():
        raise HandleProtocolError("trailing bytes after the challenge nonce")
    if not nonce:
        raise HandleProtocolError("challenge without a nonce")
    return Challenge(nonce, code, digest)


def challenge_is_for(challenge: Challenge, request_header_and_body: bytes) -> bool:
    """Whether the challenge's digest is that of our request (header + body, no envelope or
    credential).  A client answers only then: signing another request's digest would authorize
    an operation it never asked for (SecretKeyAuthenticationInfo: "unidentified request")."""
    h = _DIGEST_HASH.get(challenge.digest_code)
    return h is not None and hmac.compare_digest(h(request_header_and_body).digest(),
                                                 challenge.digest)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# HS_SECKEY


def _pbkdf2_key(secret: bytes, salt: bytes, iterations: int, key_bits: int) -> bytes:
    # Util.doPBKDF2 widens each secret byte to a Java char (b & 0xFF) and the JCE's PBKDF2
    # encodes those chars as UTF-8, so a byte >= 0x80 enters PBKDF2 as two bytes.  Do the same,
    # or a non-ASCII secret would never match a reference peer.  A key length that is not a
    # multiple of 8 is floored, as the JCE does.
    password = secret.decode("latin-1").encode("utf-8")
    return hashlib.pbkdf2_hmac("sha1", password, salt, iterations, key_bits // 8)


def _pbkdf2_params_ok(salt: bytes, iterations: int, key_bits: int) -> bool:
    return (0 < len(salt) <= MAX_PBKDF2_SALT and 1 <= iterations <= MAX_PBKDF2_ITERATIONS
            and 8 <= key_bits <= MAX_PBKDF2_KEY_BITS)  # fmt: skip


def _pbkdf2_blob(salt: bytes, iterations: int, key_bits: int, mac: bytes) -> bytes:
    return _s(salt) + _I32.pack(iterations) + _I32.pack(key_bits) + _s(mac)


def _secret_mac(code: int, secret: bytes, data: bytes) -> bytes:
    """The answer body for every code but PBKDF2 (Util.doMac)."""
    if code == CODE_SHA1:
        return hashlib.sha1(secret + data + secret).digest()
    if code == CODE_SHA256:
        return hashlib.sha256(secret + data + secret).digest()
    if code == CODE_HMAC_SHA1:
        return hmac.new(secret, data, hashlib.sha1).digest()
    if code == CODE_HMAC_SHA256:
        return hmac.new(secret, data, hashlib.sha256).digest()
    raise ValueError(f"no secret-key answer with code {code:#x}")


def _mac_matches(code: int, secret: bytes, data: bytes, body: bytes) -> bool:
    """Whether ``body`` (an answer without its code byte) is right for ``code``."""
    if code == CODE_PBKDF2_HMAC_SHA1:
        r = Reader(body)
        try:
            salt, iterations, key_bits, mac = r.blob(), r.i32(), r.i32(), r.blob()
        except InvalidValue:
            return False
        if not r.at_end() or not _pbkdf2_params_ok(salt, iterations, key_bits):
            return False
        key = _pbkdf2_key(secret, salt, iterations, key_bits)
        return hmac.compare_digest(hmac.new(key, data, hashlib.sha1).digest(), mac)
    if code not in (CODE_SHA1, CODE_SHA256, CODE_HMAC_SHA1, CODE_HMAC_SHA256):
        return False
    return hmac.compare_digest(_secret_mac(code, secret, data), body)


def secret_key_answer(secret: bytes, nonce: bytes, request_digest: bytes,
                      version: tuple[int, int], *, salt: bytes | None = None,
                      iterations: int = PBKDF2_ITERATIONS) -> bytes:  # fmt: skip
    """The HS_SECKEY answer to a challenge, in the form the reference client writes at
    ``version`` (module docstring): >= 2.7 ``0x22`` + PBKDF2 blob (random 16-byte salt unless
    given), 2.1-2.6 ``0x02`` + SHA-1 sandwich, < 2.1 the raw MD5 sandwich."""
    data = nonce + request_digest
    if version < (2, 1):
        return hashlib.md5(secret + data + secret).digest()
    if version < (2, 7):
        return bytes((CODE_SHA1,)) + _secret_mac(CODE_SHA1, secret, data)
    salt = secrets.token_bytes(PBKDF2_SALT_SIZE) if salt is None else salt
    if not _pbkdf2_params_ok(salt, iterations, PBKDF2_KEY_BITS):
        raise ValueError(f"PBKDF2 salt must be 1..{MAX_PBKDF2_SALT} bytes and iterations "
                         f"1..{MAX_PBKDF2_ITERATIONS}")  # fmt: skip
    key = _pbkdf2_key(secret, salt, iterations, PBKDF2_KEY_BITS)
    mac = hmac.new(key, data, hashlib.sha1).digest()
    return bytes((CODE_PBKDF2_HMAC_SHA1,)) + _pbkdf2_blob(salt, iterations, PBKDF2_KEY_BITS, mac)


def verify_secret_key_answer(secret: bytes, nonce: bytes, request_digest: bytes, answer: bytes,
                             *, version: tuple[int, int] | None = None) -> bool:  # fmt: skip
    """Whether ``answer`` proves knowledge of ``secret`` (the HS_SECKEY value data) for this
    nonce and request digest.  Accepts every form the reference verifier does (codes 0x02,
    0x03, 0x12, 0x13, 0x22 and the raw pre-2.1 MD5), compared in constant time.

    ``version`` (of the message that carried the answer), when given, decides between the
    raw MD5 form (< 2.1) and the coded forms, as HandleServer.verifyChallenge does; without it
    a 16-byte answer is the raw MD5 (no coded answer is 16 bytes long).  An empty secret
    authenticates nobody.
    """
    secret, answer = bytes(secret), bytes(answer)
    if not secret or not answer:
        return False
    data = bytes(nonce) + bytes(request_digest)
    raw_md5 = len(answer) == 16 if version is None else version < (2, 1)
    if raw_md5:
        return len(answer) == 16 and hmac.compare_digest(
            hashlib.md5(secret + data + secret).digest(), answer)  # fmt: skip
    return _mac_matches(answer[0], secret, data, answer[1:])


def verify_password(secret: bytes, password: bytes) -> bool:
    """Basic auth: the password is the HS_SECKEY secret itself (handle.md §7.3); constant time,
    and an empty secret authenticates nobody."""
    return bool(secret) and hmac.compare_digest(bytes(secret), bytes(password))


# ---------------------------------------------------------------------------------------------
# HS_PUBKEY (RSA)


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA key (public exponent 65537), as the reference's hdl-keygen makes by default."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _java_bigint(x: int) -> bytes:
    return x.to_bytes(x.bit_length() // 8 + 1, "big")  # BigInteger.toByteArray, x >= 0


def rsa_public_key_bytes(public_key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> bytes:
    """HS_PUBKEY value data for an RSA key, byte for byte as Util.getBytesFromPublicKey."""
    if isinstance(public_key, rsa.RSAPrivateKey):
        public_key = public_key.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("only RSA keys have an HS_PUBKEY encoding here")
    nums = public_key.public_numbers()
    return (_s(b"RSA_PUB_KEY") + b"\0\0" + _s(_java_bigint(nums.e)) + _s(_java_bigint(nums.n))
            + b"\0\0\0\0")  # fmt: skip


def load_private_key(pem_or_der: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM or DER (PKCS#8 or PKCS#1); ``ValueError`` otherwise."""
    data = bytes(pem_or_der)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=password)
        else:
            key = serialization.load_der_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"unreadable private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"only RSA private keys are supported, not {type(key).__name__}")
    return key


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of ``key`` (protect the file, not the bytes)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def default_signature_alg(version: tuple[int, int]) -> str:
    """The hash the reference client signs with at ``version`` (Util.getDefaultSigId)."""
    return "SHA256" if version >= (2, 7) else "SHA1"


def _rsa_sign(private_key: rsa.RSAPrivateKey, data: bytes, alg: str) -> tuple[str, bytes]:
    name = _REST_PUBLIC.get(_alg_key(alg))
    if name is None:
        raise ValueError(f"cannot sign with hash {alg!r}: SHA1 or SHA256")
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError("only RSA private keys can answer here")
    return name, private_key.sign(data, padding.PKCS1v15(), _SIG_HASH[name]())


def _rsa_key_from_hs_pubkey(data: bytes) -> rsa.RSAPublicKey | None:
    try:
        jwk = decode_public_key(bytes(data))
    except InvalidValue:
        return None
    if jwk.get("kty") != "RSA":  # DSA keys exist in the wild but are not supported here
        return None
    n, e = (int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")
            for s in (jwk["n"], jwk["e"]))  # fmt: skip
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        return None
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        return None


def _rsa_verify(hs_pubkey_data: bytes, hash_name: str, signature: bytes, data: bytes) -> bool:
    key = _rsa_key_from_hs_pubkey(hs_pubkey_data)
    if key is None:
        return False
    try:
        key.verify(bytes(signature), data, padding.PKCS1v15(), _SIG_HASH[hash_name]())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def public_key_answer(private_key: rsa.RSAPrivateKey, nonce: bytes, request_digest: bytes,
                      alg: str = "SHA256") -> bytes:  # fmt: skip
    """The HS_PUBKEY answer: str hash algorithm ("SHA-256" or "SHA1", as the reference writes
    them) + str RSASSA-PKCS1-v1_5 signature over nonce || request digest.  ``alg`` accepts
    SHA1/SHA-1/SHA256/SHA-256; pick it with ``default_signature_alg(version)``."""
    name, sig = _rsa_sign(private_key, bytes(nonce) + bytes(request_digest), alg)
    return _s(_WIRE_ALG[name]) + _s(sig)


def verify_public_key_answer(hs_pubkey_data: bytes, nonce: bytes, request_digest: bytes,
                             answer: bytes) -> bool:  # fmt: skip
    """Whether ``answer`` is a signature over nonce || request digest by the key whose HS_PUBKEY
    value data is ``hs_pubkey_data``.  RSA only: DSA and unknown keys, MD5, weak or absurd
    moduli and malformed answers are ``False``."""
    r = Reader(bytes(answer))
    try:
        alg, sig = r.blob(), r.blob()
    except InvalidValue:
        return False
    name = _WIRE_ALG_IN.get(alg)
    if name is None or not r.at_end():
        return False
    return _rsa_verify(hs_pubkey_data, name, sig, bytes(nonce) + bytes(request_digest))


def verify_challenge_answer(auth_type: bytes, key_data: bytes, nonce: bytes,
                            request_digest: bytes, answer: bytes,
                            *, version: tuple[int, int] | None = None) -> bool:  # fmt: skip
    """Dispatch on an OC 200 ``auth_type``: HS_SECKEY (``key_data`` = the secret) or HS_PUBKEY
    (``key_data`` = the HS_PUBKEY value data); any other type is ``False``."""
    if auth_type == SECKEY_TYPE:
        return verify_secret_key_answer(key_data, nonce, request_digest, answer, version=version)
    if auth_type == PUBKEY_TYPE:
        return verify_public_key_answer(key_data, nonce, request_digest, answer)
    return False


# ---------------------------------------------------------------------------------------------
# REST: Authorization: Handle ... (handle.md §7.3)


def rest_secret_signature(secret: bytes, nonce: bytes, cnonce: bytes, alg: str, *,
                          salt: bytes | None = None, iterations: int | None = None,
                          length: int | None = None) -> bytes:  # fmt: skip
    """The raw ``signature`` (base64 it for the header) of an HS_SECKEY REST authentication
    with ``alg`` SHA1, SHA256, HMAC-SHA1, HMAC-SHA256 or PBKDF2-HMAC-SHA1.  PBKDF2 needs
    ``salt`` (send it as the ``salt`` parameter); ``iterations`` and ``length`` (bits) default
    to the reference's 10000 and 160."""
    code = _REST_SECRET.get(_alg_key(alg))
    if code is None:
        raise ValueError(f"unsupported HS_SECKEY alg {alg!r}")
    data = bytes(nonce) + bytes(cnonce)
    if code != CODE_PBKDF2_HMAC_SHA1:
        return _secret_mac(code, bytes(secret), data)
    if salt is None:
        raise ValueError("PBKDF2-HMAC-SHA1 needs a salt (new_nonce() makes one)")
    iterations = PBKDF2_ITERATIONS if iterations is None else iterations
    length = PBKDF2_KEY_BITS if length is None else length
    if not _pbkdf2_params_ok(salt, iterations, length):
        raise ValueError("PBKDF2 parameters out of bounds")
    return hmac.new(_pbkdf2_key(bytes(secret), salt, iterations, length), data,
                    hashlib.sha1).digest()  # fmt: skip


def verify_rest_signature(secret: bytes, nonce: bytes, cnonce: bytes, alg: str, signature: bytes,
                          *, salt: bytes | None = None, iterations: int | None = None,
                          length: int | None = None) -> bool:  # fmt: skip
    """Whether an HS_SECKEY REST ``signature`` (base64-decoded) is right.  For PBKDF2 the
    salt/iterations/length parameters, when all three are present, wrap the signature into the
    PBKDF2 blob; otherwise the signature must be the whole blob (StandardHandleAuthenticator).
    Unknown algorithms (MD5 included) and out-of-bounds parameters are ``False``."""
    secret = bytes(secret)
    code = _REST_SECRET.get(_alg_key(alg))
    if not secret or code is None:
        return False
    body = bytes(signature)
    if code == CODE_PBKDF2_HMAC_SHA1 and None not in (salt, iterations, length):
        if not (isinstance(iterations, int) and isinstance(length, int)
                and _pbkdf2_params_ok(bytes(salt), iterations, length)):  # fmt: skip
            return False
        body = _pbkdf2_blob(bytes(salt), iterations, length, body)
    return _mac_matches(code, secret, bytes(nonce) + bytes(cnonce), body)


def rest_public_key_signature(private_key: rsa.RSAPrivateKey, nonce: bytes, cnonce: bytes,
                              alg: str = "SHA256") -> bytes:  # fmt: skip
    """The raw ``signature`` of an HS_PUBKEY REST authentication: RSASSA-PKCS1-v1_5 over
    nonce || cnonce with ``alg`` SHA1 or SHA256 (sent as the ``alg`` parameter)."""
    return _rsa_sign(private_key, bytes(nonce) + bytes(cnonce), alg)[1]


def verify_rest_public_key_signature(hs_pubkey_data: bytes, nonce: bytes, cnonce: bytes,
                                     alg: str, signature: bytes) -> bool:  # fmt: skip
    """Whether ``signature`` is the key's RSA signature over nonce || cnonce with ``alg``."""
    name = _REST_PUBLIC.get(_alg_key(alg))
    return name is not None and _rsa_verify(hs_pubkey_data, name, signature,
                                            bytes(nonce) + bytes(cnonce))  # fmt: skip


# The header grammar of HandleAuthorizationHeader: "Handle", then comma-separated
# token=token-or-quoted-string pairs; keys are case-insensitive; the ``id`` value is
# percent-decoded ('+' kept).  Anchored here, so garbage between pairs is refused rather than
# skipped.
_TOKEN = r"[-A-Za-z0-9!#$%&'*+.`^_|~]+"
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_SCHEME = re.compile(r"\s*Handle\s+(.*)", re.IGNORECASE | re.DOTALL)
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED})\s*((?:,\s*)*)", re.DOTALL)
_KNOWN_PARAMS = {k.lower(): k for k in (
    "version", "sessionId", "id", "cnonce", "type", "alg", "signature", "salt", "iterations",
    "length", "clientCert", "renegotiate")}  # fmt: skip


def _percent_decode(text: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("percent-encoded text is not UTF-8") from None


def parse_authorization_header(value: str) -> dict[str, str]:
    """``Handle k="v", k2=v2`` → ``{"k": "v", "k2": "v2"}``; known keys get their canonical
    spelling (``sessionId``, ``cnonce``, ...), values are unquoted, ``id`` is percent-decoded; a
    repeated key keeps its last value.  Anything else raises ``MalformedRequest``."""
    if not isinstance(value, str) or len(value) > MAX_HEADER:
        raise MalformedRequest("Authorization header missing or too long")
    m = _SCHEME.fullmatch(value)
    if m is None or not m.group(1).strip():
        raise MalformedRequest("not an 'Authorization: Handle' header with parameters")
    text, pos, out, separated = m.group(1), 0, {}, True
    while pos < len(text):
        p = _PARAM.match(text, pos)
        if p is None or not separated:
            raise MalformedRequest(f"malformed Handle authorization at {text[pos:][:20]!r}")
        key, raw = p.group(1), p.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
        if key.lower() == "id":
            raw = _percent_decode(raw)
        out[_KNOWN_PARAMS.get(key.lower(), key)] = raw
        separated, pos = bool(p.group(3)), p.end()
    return out


def format_authorization_header(params: dict[str, str]) -> str:
    """The inverse of ``parse_authorization_header``: every value quoted, ``id`` percent-encoded
    (so '%' and non-ASCII survive).  Values must be ASCII without line breaks."""
    parts = []
    for key, value in params.items():
        if not re.fullmatch(_TOKEN, key):
            raise ValueError(f"bad Authorization parameter name {key!r}")
        value = str(value)
        if key.lower() == "id":
            value = quote(value, safe=":/!$&'()*+,;=@-._~")
        if not value.isascii() or "\r" in value or "\n" in value:
            raise ValueError(f"Authorization parameter {key} must be ASCII on one line")
        parts.append(f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "Handle " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Identities and Basic auth


def parse_identity(text: str) -> tuple[int, str]:
    """``"300:88.118.8/ADMIN"`` → ``(300, "88.118.8/ADMIN")``; without a decimal ``index:``
    the whole text is the handle at index 0 ("any index", TM9 §1.4)
    (StandardHandleAuthenticator.extractHandleValueReferenceFromString)."""
    head, sep, tail = text.partition(":")
    if sep and re.fullmatch(r"[0-9]+", head):
        index, handle = int(head), tail
        if index > 0x7FFFFFFF:
            raise MalformedRequest(f"identity index {head} out of range")
    else:
        index, handle = 0, text
    if not handle:
        raise MalformedRequest("identity without a handle")
    return index, handle


def parse_basic(header_value: str) -> tuple[str, bytes]:
    """``Basic base64(user:password)`` → (``"index:handle"``, password bytes) (handle.md §7.3).

    The decoded credentials split at their first ':' (the identity's own colon is
    percent-encoded, ``300%3A88.118.8/ADMIN``); the user part is then percent-decoded ('+'
    kept) and read by ``parse_identity``, so a user without ``index:`` comes back as
    ``"0:<handle>"``.  The password stays raw bytes.  Raises ``MalformedRequest``.
    """
    parts = header_value.split() if isinstance(header_value, str) else []
    if len(parts) != 2 or parts[0].lower() != "basic":
        raise MalformedRequest("not an 'Authorization: Basic' header")
    token = parts[1]
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest("Basic credentials are not base64") from None
    user, sep, password = raw.partition(b":")
    if not sep:
        raise MalformedRequest("Basic credentials without ':'")
    try:
        user_text = user.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("Basic user name is not UTF-8") from None
    index, handle = parse_identity(_percent_decode(user_text))
    return f"{index}:{handle}", password
