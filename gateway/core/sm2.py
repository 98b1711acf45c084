"""SM2 signatures (GB/T 32918) with SM3, their JWK and compact JWS profile (docs/sm2.md).

The curve arithmetic, the nonce and the Z digest are OpenSSL's: the system's ``libcrypto.so.3``
(OpenSSL 3), called through :mod:`ctypes` with ``EVP_DigestSign``/``EVP_DigestVerify`` and the
distinguishing identifier set explicitly with ``EVP_PKEY_CTX_set1_id``. The ``cryptography``
package's own OpenSSL has no SM2 key type ("curve 1.2.156.10197.1.301 is not supported"), and
the PyPI packages measured against this binding were no cheaper per lookup and less maintained
(docs/sm2.md has the figures). Nothing of SM2 is computed in Python: Python checks what
enters (lengths, ranges, the curve equation) before any byte reaches C, so a hostile value
becomes a :class:`SM2KeyError` and never a crash.

A signature is the 64-byte ``r‖s`` (each big-endian, 32 bytes), as JOSE encodes ECDSA; OpenSSL
reads and writes DER, converted here with ``cryptography``'s strict DER codec.

SM3 itself (and HMAC-SM3) is pyca ``cryptography``'s.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import hashlib
import hmac
import json
import re
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gateway.core.jose import CompactJWS
from gateway.errors import ConfigurationError, InvalidInput

__all__ = [
    "ALGORITHM",
    "SIGNATURE_LENGTH",
    "USER_ID",
    "SM2KeyError",
    "SM2PrivateKey",
    "SM2PublicKey",
    "available",
    "generate_private_key",
    "hmac_sm3",
    "hmac_sm3_matches",
    "sm3",
    "thumbprint",
    "verify",
]

#: The JWS ``alg`` of this profile: a private-use name (not in the IANA JOSE registry).
ALGORITHM: Final = "SM2"
#: The distinguishing identifier of GB/T 32918 (its default ``1234567812345678``, GM/T 0009),
#: set explicitly on every signature and verification rather than left to a library default.
USER_ID: Final = b"1234567812345678"
#: ``r‖s``, 32 bytes each.
SIGNATURE_LENGTH: Final = 64

# The recommended curve (GB/T 32918.5): y² = x³ + ax + b over F_p, base point G of order n,
# cofactor 1 (so a point on the curve is in the group G generates).
_P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A: Final = _P - 3
_B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_COORDINATE_BYTES: Final = 32

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_PUBLIC_MEMBERS: Final = frozenset({"kty", "crv", "x", "y", "kid", "alg", "use"})
# Members that carry a private key in some JWK type: none may appear in a public key.
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class SM2KeyError(InvalidInput):
    """An SM2 key, or its JWK, that cannot be accepted.

    ``field`` names the member (``jwk.x``, ``jwk.d`` …) and ``reason`` comes from a fixed
    vocabulary; neither repeats what was sent.
    """


# --- libcrypto ------------------------------------------------------------------------------

_EVP_PKEY_PUBLIC_KEY: Final = 0x86  # OSSL_KEYMGMT_SELECT_ALL_PARAMETERS | PUBLIC_KEY
_EVP_PKEY_KEYPAIR: Final = 0x87  # ... | PRIVATE_KEY
_DER_SIGNATURE_MAX: Final = 80  # SEQUENCE of two INTEGERs of at most 33 bytes: 72


class _LibCrypto:
    """The few libcrypto functions this module calls, each with its exact C signature.

    Every pointer is declared ``c_void_p``: a default ``int`` return type would cut 64-bit
    pointers in half and turn the first use into a crash.
    """

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, cp, sz, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int
        psz = ctypes.POINTER(ctypes.c_size_t)
        pvp = ctypes.POINTER(ctypes.c_void_p)

        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = list(argtypes)
            return function

        self.version_num = fn("OpenSSL_version_num", ctypes.c_ulong)
        self.err_clear = fn("ERR_clear_error", None)
        self.bn_bin2bn = fn("BN_bin2bn", vp, cp, i, vp)
        self.bn_bn2binpad = fn("BN_bn2binpad", i, vp, ctypes.c_char_p, i)
        self.bn_clear_free = fn("BN_clear_free", None, vp)
        self.bld_new = fn("OSSL_PARAM_BLD_new", vp)
        self.bld_free = fn("OSSL_PARAM_BLD_free", None, vp)
        self.bld_utf8 = fn("OSSL_PARAM_BLD_push_utf8_string", i, vp, cp, cp, sz)
        self.bld_octets = fn("OSSL_PARAM_BLD_push_octet_string", i, vp, cp, cp, sz)
        self.bld_bn = fn("OSSL_PARAM_BLD_push_BN", i, vp, cp, vp)
        self.bld_to_param = fn("OSSL_PARAM_BLD_to_param", vp, vp)
        self.param_free = fn("OSSL_PARAM_free", None, vp)
        self.pctx_from_name = fn("EVP_PKEY_CTX_new_from_name", vp, vp, cp, cp)
        self.pctx_from_pkey = fn("EVP_PKEY_CTX_new_from_pkey", vp, vp, vp, cp)
        self.pctx_free = fn("EVP_PKEY_CTX_free", None, vp)
        self.pctx_set1_id = fn("EVP_PKEY_CTX_set1_id", i, vp, cp, i)
        self.fromdata_init = fn("EVP_PKEY_fromdata_init", i, vp)
        self.fromdata = fn("EVP_PKEY_fromdata", i, vp, pvp, i, vp)
        self.keygen_init = fn("EVP_PKEY_keygen_init", i, vp)
        self.generate = fn("EVP_PKEY_generate", i, vp, pvp)
        self.public_check = fn("EVP_PKEY_public_check", i, vp)
        self.pairwise_check = fn("EVP_PKEY_pairwise_check", i, vp)
        self.get_bn_param = fn("EVP_PKEY_get_bn_param", i, vp, cp, pvp)
        self.get_octets_param = fn("EVP_PKEY_get_octet_string_param", i, vp, cp, cp, sz, psz)
        self.pkey_free = fn("EVP_PKEY_free", None, vp)
        self.md_sm3 = fn("EVP_sm3", vp)
        self.mdctx_new = fn("EVP_MD_CTX_new", vp)
        self.mdctx_free = fn("EVP_MD_CTX_free", None, vp)
        self.mdctx_set_pctx = fn("EVP_MD_CTX_set_pkey_ctx", None, vp, vp)
        self.sign_init = fn("EVP_DigestSignInit", i, vp, pvp, vp, vp, vp)
        self.sign = fn("EVP_DigestSign", i, vp, cp, psz, cp, sz)
        self.verify_init = fn("EVP_DigestVerifyInit", i, vp, pvp, vp, vp, vp)
        self.verify = fn("EVP_DigestVerify", i, vp, cp, sz, cp, sz)


_lib_lock = threading.Lock()
_lib: _LibCrypto | None = None


def _libcrypto() -> _LibCrypto:
    """The system's OpenSSL 3 libcrypto, loaded once; a clear configuration error without it."""
    global _lib  # noqa: PLW0603 -- loaded on first use, so gateways without SM2 keys never need it
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is None:
            names = ["libcrypto.so.3", ctypes.util.find_library("crypto")]
            for name in filter(None, names):
                try:
                    loaded = _LibCrypto(ctypes.CDLL(name))
                except (OSError, AttributeError):
                    continue
                if loaded.version_num() >= 0x30000000:
                    _probe(loaded)
                    _lib = loaded
                    break
            else:
                raise ConfigurationError(
                    ["SM2 needs the system's OpenSSL 3 libcrypto (libcrypto.so.3)"]
                )
    return _lib


def available() -> bool:
    """Whether this system's libcrypto can do SM2 (for what may fall back, like the demo)."""
    try:
        _libcrypto()
    except ConfigurationError:
        return False
    return True


def _probe(lib: _LibCrypto) -> None:
    # Some distributions build OpenSSL without SM2 (no-sm2): refuse at load, not per request.
    ctx = lib.pctx_from_name(None, b"SM2", None)
    if not ctx:
        lib.err_clear()
        raise ConfigurationError(["the system's libcrypto was built without SM2"])
    lib.pctx_free(ctx)


class _Handle:
    """An ``EVP_PKEY *`` owned by one key object, freed when that object goes."""

    __slots__ = ("__weakref__", "pointer")

    def __init__(self, lib: _LibCrypto, pointer: int) -> None:
        self.pointer = pointer
        weakref.finalize(self, lib.pkey_free, pointer)


def _pkey_from(*, point: bytes, private: bytes | None) -> _Handle:
    """An SM2 ``EVP_PKEY`` from an uncompressed point (and the private scalar), checked by
    OpenSSL too: the point on the curve, and the pair matching when ``private`` is given."""
    lib = _libcrypto()
    bld = lib.bld_new()
    bn = None
    params = None
    ctx = None
    pkey = ctypes.c_void_p()
    try:
        ok = bool(bld) and lib.bld_utf8(bld, b"group", b"SM2", 0) == 1
        ok = ok and lib.bld_octets(bld, b"pub", point, len(point)) == 1
        if ok and private is not None:
            bn = lib.bn_bin2bn(private, len(private), None)
            ok = bool(bn) and lib.bld_bn(bld, b"priv", bn) == 1
        params = lib.bld_to_param(bld) if ok else None
        ctx = lib.pctx_from_name(None, b"SM2", None) if params else None
        selection = _EVP_PKEY_PUBLIC_KEY if private is None else _EVP_PKEY_KEYPAIR
        if not (
            ctx
            and lib.fromdata_init(ctx) == 1
            and lib.fromdata(ctx, ctypes.byref(pkey), selection, params) == 1
            and pkey.value
        ):
            raise SM2KeyError("jwk", "not-a-key")
        handle = _Handle(lib, pkey.value)
        check = lib.pctx_from_pkey(None, handle.pointer, None)
        try:
            sound = bool(check) and lib.public_check(check) == 1
            if private is not None:
                sound = sound and lib.pairwise_check(check) == 1
        finally:
            lib.pctx_free(check)
        if not sound:
            raise SM2KeyError("jwk", "not-a-key" if private is None else "pair-mismatch")
        return handle
    finally:
        lib.err_clear()
        lib.pctx_free(ctx)
        lib.param_free(params)
        lib.bld_free(bld)
        lib.bn_clear_free(bn)


# --- keys -----------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    """A 32-byte coordinate or scalar member, in its one canonical unpadded base64url form."""
    value = jwk.get(name)
    if not isinstance(value, str):
        raise SM2KeyError(f"jwk.{name}", "missing" if value is None else "not-a-string")
    if len(value) != 43 or not _B64URL.fullmatch(value):
        raise SM2KeyError(f"jwk.{name}", "not-32-bytes-base64url")
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except (binascii.Error, ValueError):
        raise SM2KeyError(f"jwk.{name}", "not-32-bytes-base64url") from None
    if _b64url(raw) != value:  # non-zero trailing bits: a second spelling of the same bytes
        raise SM2KeyError(f"jwk.{name}", "not-32-bytes-base64url")
    return raw


def _check_point(x: bytes, y: bytes) -> None:
    # Checked before OpenSSL sees it, so the refusal names its reason; OpenSSL checks again.
    xi, yi = int.from_bytes(x, "big"), int.from_bytes(y, "big")
    if xi >= _P or yi >= _P:
        raise SM2KeyError("jwk", "coordinate-out-of-range")
    if (yi * yi - (xi * xi * xi + _A * xi + _B)) % _P != 0:
        raise SM2KeyError("jwk", "point-not-on-curve")


def _check_members(jwk: Any, *, private: bool) -> Mapping[str, Any]:
    if not isinstance(jwk, Mapping) or not all(isinstance(k, str) for k in jwk):
        raise SM2KeyError("jwk", "not-an-object")
    allowed = _PUBLIC_MEMBERS | {"d"} if private else _PUBLIC_MEMBERS
    if not private and _PRIVATE_MEMBERS & set(jwk):
        raise SM2KeyError("jwk", "private-member-in-public-key")
    extra = set(jwk) - allowed
    if extra:
        raise SM2KeyError("jwk", "member-not-allowed")
    if jwk.get("kty") != "EC":
        raise SM2KeyError("jwk.kty", "not-EC")
    if jwk.get("crv") != "SM2":
        raise SM2KeyError("jwk.crv", "not-SM2")
    if jwk.get("alg", ALGORITHM) != ALGORITHM:
        raise SM2KeyError("jwk.alg", "not-SM2")
    if jwk.get("use", "sig") != "sig":
        raise SM2KeyError("jwk.use", "not-sig")
    return jwk


def thumbprint(*, x: bytes, y: bytes) -> str:
    """The key's ``kid``: RFC 7638's SHA-256 thumbprint over ``crv``, ``kty``, ``x``, ``y``."""
    members = {"crv": "SM2", "kty": "EC", "x": _b64url(x), "y": _b64url(y)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    return _b64url(hashlib.sha256(canonical).digest())


class SM2PublicKey:
    """An SM2 public key on the recommended curve, checked once when it is made."""

    __slots__ = ("_handle", "kid", "x", "y")

    def __init__(self, *, x: bytes, y: bytes, _handle: _Handle | None = None) -> None:
        if len(x) != _COORDINATE_BYTES or len(y) != _COORDINATE_BYTES:
            raise SM2KeyError("jwk", "not-32-bytes-base64url")
        _check_point(x, y)
        self.x = bytes(x)
        self.y = bytes(y)
        self._handle = _handle or _pkey_from(point=b"\x04" + self.x + self.y, private=None)
        self.kid = thumbprint(x=self.x, y=self.y)

    @classmethod
    def from_jwk(cls, jwk: Any) -> SM2PublicKey:
        """Parse a public JWK ``{"kty": "EC", "crv": "SM2", "x", "y"}`` strictly.

        ``kid``, ``alg`` (``SM2``) and ``use`` (``sig``) are allowed and checked; a private
        member or any other member refuses the key; ``kid``, when present, must be the
        thumbprint.
        """
        checked = _check_members(jwk, private=False)
        key = cls(x=_member(checked, "x"), y=_member(checked, "y"))
        if checked.get("kid", key.kid) != key.kid:
            raise SM2KeyError("jwk.kid", "not-the-thumbprint")
        return key

    def jwk(self) -> dict[str, str]:
        """The public JWK with ``kid`` (its thumbprint), ``alg`` and ``use``."""
        return {
            "kty": "EC",
            "crv": "SM2",
            "x": _b64url(self.x),
            "y": _b64url(self.y),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        }

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` (``r‖s``) is this key's over ``message`` (SM3 over Z‖M, the
        user id :data:`USER_ID`). Never raises for a bad signature: it is ``False``."""
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not (0 < r < _N and 0 < s < _N):
            return False
        der = encode_dss_signature(r, s)
        return _digest_verify(self._handle, der, _message(message))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"SM2PublicKey(kid={self.kid!r})"


class SM2PrivateKey:
    """An SM2 private key with its public key. Its ``repr`` never shows the secret."""

    __slots__ = ("_d", "_handle", "public_key")

    def __init__(
        self, *, d: bytes, public_key: SM2PublicKey, _handle: _Handle | None = None
    ) -> None:
        if len(d) != _COORDINATE_BYTES:
            raise SM2KeyError("jwk.d", "not-32-bytes-base64url")
        # [1, n-2]: signing divides by 1 + d (GB/T 32918.2).
        if not 0 < int.from_bytes(d, "big") < _N - 1:
            raise SM2KeyError("jwk.d", "scalar-out-of-range")
        self._d = bytes(d)
        self.public_key = public_key
        point = b"\x04" + public_key.x + public_key.y
        self._handle = _handle or _pkey_from(point=point, private=self._d)

    @classmethod
    def from_jwk(cls, jwk: Any) -> SM2PrivateKey:
        """Parse a private JWK (the public members and ``d``); ``d`` must match ``x``/``y``."""
        checked = _check_members(jwk, private=True)
        public = SM2PublicKey(x=_member(checked, "x"), y=_member(checked, "y"))
        if checked.get("kid", public.kid) != public.kid:
            raise SM2KeyError("jwk.kid", "not-the-thumbprint")
        return cls(d=_member(checked, "d"), public_key=public)

    @property
    def kid(self) -> str:
        return self.public_key.kid

    def private_jwk(self) -> dict[str, str]:
        """The private JWK (for a key file: never logged, never sent)."""
        return {**self.public_key.jwk(), "d": _b64url(self._d)}

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ``r‖s`` signature of ``message`` (SM3 over Z‖M, user id
        :data:`USER_ID`, a fresh nonce from OpenSSL's CSPRNG)."""
        r, s = decode_dss_signature(_digest_sign(self._handle, _message(message)))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def __repr__(self) -> str:
        return f"SM2PrivateKey(kid={self.kid!r})"


def generate_private_key() -> SM2PrivateKey:
    """A new SM2 key pair from OpenSSL's key generation (its CSPRNG)."""
    lib = _libcrypto()
    ctx = lib.pctx_from_name(None, b"SM2", None)
    pkey = ctypes.c_void_p()
    bn = ctypes.c_void_p()
    try:
        if not (ctx and lib.keygen_init(ctx) == 1 and lib.generate(ctx, ctypes.byref(pkey)) == 1):
            raise ConfigurationError(["SM2 key generation failed in libcrypto"])
        handle = _Handle(lib, pkey.value or 0)
        point = ctypes.create_string_buffer(65)
        length = ctypes.c_size_t()
        d = ctypes.create_string_buffer(32)
        if not (
            lib.get_octets_param(handle.pointer, b"pub", point, 65, ctypes.byref(length)) == 1
            and length.value == 65
            and point.raw[0] == 4
            and lib.get_bn_param(handle.pointer, b"priv", ctypes.byref(bn)) == 1
            and lib.bn_bn2binpad(bn, d, 32) == 32
        ):
            raise ConfigurationError(["SM2 key generation failed in libcrypto"])
        public = SM2PublicKey(x=point.raw[1:33], y=point.raw[33:65])
        return SM2PrivateKey(d=d.raw, public_key=public, _handle=handle)
    finally:
        lib.err_clear()
        lib.bn_clear_free(bn)
        lib.pctx_free(ctx)


def _message(message: bytes) -> bytes:
    # bytes() of an int would allocate that many zero bytes, and ctypes would pass None as a
    # null pointer: only bytes are signed or verified.
    if not isinstance(message, bytes):
        raise TypeError("an SM2 message is bytes")
    return message


def _digest_context(lib: _LibCrypto, handle: _Handle) -> tuple[int, int]:
    """A digest context with its own key context carrying the user id (both to be freed)."""
    md = lib.mdctx_new()
    pctx = lib.pctx_from_pkey(None, handle.pointer, None)
    if not md or not pctx or lib.pctx_set1_id(pctx, USER_ID, len(USER_ID)) != 1:
        lib.mdctx_free(md)
        lib.pctx_free(pctx)
        lib.err_clear()
        raise ConfigurationError(["libcrypto refused the SM2 user id"])
    lib.mdctx_set_pctx(md, pctx)
    return md, pctx


def _digest_sign(handle: _Handle, message: bytes) -> bytes:
    lib = _libcrypto()
    md, pctx = _digest_context(lib, handle)
    try:
        signature = ctypes.create_string_buffer(_DER_SIGNATURE_MAX)
        length = ctypes.c_size_t(_DER_SIGNATURE_MAX)
        if (
            lib.sign_init(md, None, lib.md_sm3(), None, handle.pointer) != 1
            or lib.sign(md, signature, ctypes.byref(length), message, len(message)) != 1
        ):
            raise ConfigurationError(["SM2 signing failed in libcrypto"])
        return signature.raw[: length.value]
    finally:
        # The digest context does not own a key context it was given: both are freed here.
        lib.mdctx_free(md)
        lib.pctx_free(pctx)
        lib.err_clear()


def _digest_verify(handle: _Handle, der: bytes, message: bytes) -> bool:
    lib = _libcrypto()
    md, pctx = _digest_context(lib, handle)
    try:
        if lib.verify_init(md, None, lib.md_sm3(), None, handle.pointer) != 1:
            raise ConfigurationError(["SM2 verification failed to start in libcrypto"])
        # 1 is a valid signature; 0 a mismatch, a negative value a malformed one: both False.
        return bool(lib.verify(md, der, len(der), message, len(message)) == 1)
    finally:
        lib.mdctx_free(md)
        lib.pctx_free(pctx)
        lib.err_clear()


# --- JWS ------------------------------------------------------------------------------------


def verify(jws: CompactJWS, *, key: SM2PublicKey) -> bool:
    """Whether ``jws`` (parsed strictly by :func:`gateway.core.jose.parse_compact`) carries a
    valid SM2 signature by ``key``. The header must name ``SM2``: the algorithm is the key's,
    never the token's choice. A bad signature is ``False``, never an exception."""
    if jws.header.alg != ALGORITHM:
        return False
    return key.verify(jws.signature, jws.signing_input)


# --- SM3 ------------------------------------------------------------------------------------


def sm3(message: bytes) -> bytes:
    """The SM3 digest of ``message`` (GB/T 32905)."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(message)
    return digest.finalize()


#: The shortest key :func:`hmac_sm3` takes: SM3's output, 256 bits.
_HMAC_MIN_KEY_BYTES: Final = 32


def hmac_sm3(key: bytes, message: bytes) -> bytes:
    """HMAC-SM3 (RFC 2104 with SM3) of ``message``: the audit log's keying of subjects."""
    if not isinstance(key, bytes) or len(key) < _HMAC_MIN_KEY_BYTES:
        raise ConfigurationError([f"an HMAC-SM3 key needs at least {_HMAC_MIN_KEY_BYTES} bytes"])
    mac = crypto_hmac.HMAC(key, hashes.SM3())
    mac.update(message)
    return mac.finalize()


def hmac_sm3_matches(key: bytes, message: bytes, tag: bytes) -> bool:
    """Whether ``tag`` is the HMAC-SM3 of ``message``, compared in constant time."""
    return hmac.compare_digest(hmac_sm3(key, message), tag)
