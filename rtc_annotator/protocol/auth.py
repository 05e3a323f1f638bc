"""Peer authentication bound to one WebRTC connection (sans-I/O).

The signaling server relays the SDP, so it could answer an offer itself and sit in the middle of
a peer connection. What it cannot forge:

* an Ed25519 signature of a peer's long-term key (the private key never leaves the peer), and
* a *vouch*: a statement signed by the room admin's key (which never reaches the server) that a
  worker key belongs to the room.

Channel binding. Each side proves its key by signing a transcript of *this* connection::

    "rtc-annotator-auth-v1" NUL role NUL session_id NUL prover_fp NUL verifier_fp NUL nonce

``prover_fp`` / ``verifier_fp`` are the DTLS certificate fingerprints of the prover's and the
verifier's end, read from the SDP each side sent (aiortc checks the remote certificate against
them). ``nonce`` is 32 random bytes the verifier sent in its ``AUTH_CHALLENGE`` on this
connection. A man in the middle terminates DTLS twice, so each real peer sees the relay's
certificate as the remote one: a relayed proof names fingerprints the verifier does not see and
fails; a proof replayed on another connection carries a stale nonce and other fingerprints.

This module does no I/O: it builds and checks transcripts, proofs and vouches.
:mod:`rtc_annotator.trust` holds keys on disk; :mod:`rtc_annotator.transport.peer` runs the
exchange right after ``HELLO``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from rtc_annotator.errors import RtcAnnotatorError

DOMAIN = b"rtc-annotator-auth-v1"
"""Separates these signatures from any other use of the same key."""
VOUCH_DOMAIN = b"rtc-annotator-vouch-v1"
NONCE_BYTES = 32
_FP_LINE = re.compile(r"^a=fingerprint:(\S+)\s+([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


class AuthFailed(RtcAnnotatorError):
    """The peer could not prove the key it claims over this connection."""

    code = "PEER_AUTH_FAILED"
    default_hint = ("someone may be relaying this connection (a compromised signaling server); "
                    "do not send data, tell the room admin")


class PeerNotTrusted(RtcAnnotatorError):
    """The peer proved a key that no admin key in [trust] admin_public_keys vouches for."""

    code = "PEER_NOT_TRUSTED"
    default_hint = ("ask the room admin to vouch for the worker's key "
                    "(`rtc-annotator trust vouch`) or set [trust] require_vouched = false")


# --------------------------------------------------------------------------- keys


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64(text: str, *, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AuthFailed(f"{what} is not base64url") from None


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """``ed25519:`` + base64url of the 32 raw public key bytes (how keys appear everywhere)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return "ed25519:" + b64(pub.public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """The key of :func:`public_key_text`; :class:`AuthFailed` (code ``BAD_KEY``) names what is
    wrong."""
    hint = "copy the key exactly as `rtc-annotator trust show-key` prints it"
    if not isinstance(text, str) or not text.startswith("ed25519:"):
        raise AuthFailed(f"public key {str(text)[:20]!r} does not start with 'ed25519:'",
                         code="BAD_KEY", hint=hint)
    try:
        raw = unb64(text[len("ed25519:"):], what="public key")
    except AuthFailed as exc:
        raise AuthFailed(exc.message, code="BAD_KEY", hint=hint) from None
    if len(raw) != 32:
        raise AuthFailed(f"public key has {len(raw)} bytes, expected 32", code="BAD_KEY",
                         hint=hint)
    return Ed25519PublicKey.from_public_bytes(raw)


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


# --------------------------------------------------------------------------- fingerprints


def sdp_fingerprints(sdp: str) -> str:
    """Canonical text of the DTLS fingerprints in one SDP: ``algo HEX`` lines, lower case,
    sorted, de-duplicated, joined by ``,``. Raises :class:`AuthFailed` when there is none."""
    found = sorted({f"{algo.lower()} {value.upper()}" for algo, value in _FP_LINE.findall(sdp)})
    if not found:
        raise AuthFailed("the SDP carries no DTLS fingerprint",
                         hint="the peer must use DTLS (every WebRTC stack does)")
    return ",".join(found)


# --------------------------------------------------------------------------- channel binding

Role = Literal["client", "worker"]


@dataclass(frozen=True)
class Binding:
    """What one side knows about its connection."""

    session_id: str
    local_fp: str
    """:func:`sdp_fingerprints` of the SDP this side sent."""
    remote_fp: str
    """:func:`sdp_fingerprints` of the SDP this side received."""


def transcript(role: Role, session_id: str, prover_fp: str, verifier_fp: str,
               nonce: bytes) -> bytes:
    """The bytes a proof signs (see the module docstring)."""
    parts = [DOMAIN, role.encode(), session_id.encode(), prover_fp.encode(),
             verifier_fp.encode(), nonce]
    return b"\x00".join(parts)


def make_proof(key: Ed25519PrivateKey, role: Role, binding: Binding, their_nonce: bytes) -> str:
    """Signature (base64url) proving ``key`` on this connection to the peer that sent
    ``their_nonce``."""
    return b64(key.sign(transcript(role, binding.session_id, binding.local_fp,
                                   binding.remote_fp, their_nonce)))


def verify_proof(public_key: str, signature: str, role: Role, binding: Binding,
                 our_nonce: bytes) -> Ed25519PublicKey:
    """Check a peer's proof from our side of the connection; :class:`AuthFailed` otherwise.

    The peer is the prover: its fingerprint is our ``remote_fp``, ours is the verifier's."""
    key = parse_public_key(public_key)
    sig = unb64(signature, what="signature")
    try:
        key.verify(sig, transcript(role, binding.session_id, binding.remote_fp,
                                   binding.local_fp, our_nonce))
    except InvalidSignature:
        raise AuthFailed(
            f"the {role}'s proof does not match this connection (key {public_key[:20]}...)"
        ) from None
    return key


# --------------------------------------------------------------------------- vouches


@dataclass(frozen=True)
class Vouch:
    """The room admin's statement: ``public_key`` is worker ``name`` of ``room`` until
    ``expires_at`` (unix seconds)."""

    name: str
    public_key: str
    room: str
    expires_at: float
    admin_key: str
    """The admin public key that signed it."""

    def payload(self) -> bytes:
        body = {"v": 1, "name": self.name, "public_key": self.public_key, "room": self.room,
                "expires_at": self.expires_at, "admin_key": self.admin_key}
        return VOUCH_DOMAIN + b"\x00" + json.dumps(body, sort_keys=True,
                                                   separators=(",", ":")).encode()


def sign_vouch(admin: Ed25519PrivateKey, *, name: str, public_key: str, room: str,
               valid_s: float, now: float | None = None) -> str:
    """A vouch as one line of text (``payload_b64.signature_b64``), to hand to the worker."""
    parse_public_key(public_key)
    expires_at = round((now or time.time()) + valid_s)
    vouch = Vouch(name=name, public_key=public_key, room=room, expires_at=expires_at,
                  admin_key=public_key_text(admin))
    payload = vouch.payload()
    return b64(payload) + "." + b64(admin.sign(payload))


def read_vouch(text: str) -> Vouch:
    """Parse a vouch without checking who signed it; :class:`AuthFailed` when malformed."""
    try:
        payload_b64, _sig = text.strip().split(".")
    except ValueError:
        raise AuthFailed("vouch is not 'payload.signature'",
                         hint="copy the whole line `rtc-annotator trust vouch` printed") from None
    payload = unb64(payload_b64, what="vouch")
    if not payload.startswith(VOUCH_DOMAIN + b"\x00"):
        raise AuthFailed("vouch payload has the wrong prefix")
    try:
        body = json.loads(payload[len(VOUCH_DOMAIN) + 1:])
        return Vouch(name=str(body["name"]), public_key=str(body["public_key"]),
                     room=str(body["room"]), expires_at=float(body["expires_at"]),
                     admin_key=str(body["admin_key"]))
    except (ValueError, KeyError, TypeError):
        raise AuthFailed("vouch payload is not a vouch statement") from None


def check_vouch(text: str, *, public_key: str, admin_keys: list[str] | tuple[str, ...],
                room: str | None, now: float | None = None) -> Vouch:
    """The vouch for ``public_key`` if one of ``admin_keys`` signed it for ``room`` (any room
    when None) and it has not expired; :class:`PeerNotTrusted` otherwise."""
    try:
        vouch = read_vouch(text)
    except AuthFailed as exc:
        raise PeerNotTrusted(f"the worker's vouch is unreadable ({exc.message})") from None
    if vouch.admin_key not in admin_keys:
        raise PeerNotTrusted(f"the worker's key is vouched for by {vouch.admin_key[:20]}..., "
                             "which is not in [trust] admin_public_keys")
    payload_b64, sig_b64 = text.strip().split(".")
    try:
        parse_public_key(vouch.admin_key).verify(unb64(sig_b64, what="vouch signature"),
                                                 unb64(payload_b64, what="vouch"))
    except (InvalidSignature, AuthFailed):
        raise PeerNotTrusted("the worker's vouch has a bad signature") from None
    if vouch.public_key != public_key:
        raise PeerNotTrusted(f"the vouch is for key {vouch.public_key[:20]}..., "
                             f"the worker proved {public_key[:20]}...")
    if room is not None and vouch.room != room:
        raise PeerNotTrusted(f"the worker is vouched for room {vouch.room!r}, not {room!r}")
    if vouch.expires_at <= (now if now is not None else time.time()):
        raise PeerNotTrusted(f"the vouch for worker {vouch.name!r} has expired",
                             hint="ask the room admin for a new one (`rtc-annotator trust vouch`)")
    return vouch
