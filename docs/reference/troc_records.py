#!/usr/bin/env python3
"""An independent implementation of troc's record format, version 1, written from docs/protocol.md
alone (no Rust code is imported, called or translated).

It decodes a record's bytes, applies every stateless rule, the clock rules and the signature rules of
the specification in its order, computes the id, encodes bodies from their JSON view, and derives
public keys and PeerIds. Signatures are made and verified with the `cryptography` package
(OpenSSL's Ed25519), plus the extra rules of section 8 that OpenSSL does not apply (R not of small
order); curve points are decoded here, in pure Python, for the key rules of section 7.

Usage:
    python3 docs/reference/troc_records.py docs/test-vectors.json

Checks every valid vector (bytes from the body, id, signatures, acceptance, JSON view, PeerIds) and
refuses every invalid vector, reporting for each whether it gives the same rejection code. Exits 0
when every valid vector passes, every invalid vector is refused, and the codes listed in
REQUIRED_CODES agree exactly. Needs Python 3.8+ and `pip install cryptography`.
"""

import hashlib
import json
import sys

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
except ImportError:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        "error: the Python module `cryptography` is missing. Install it with: pip install cryptography\n"
    )
    sys.exit(3)


# ---------------------------------------------------------------------------------------------
# Rejections


class Reject(Exception):
    """A record refused with a rejection code (section 16)."""

    def __init__(self, code, why=""):
        super().__init__(f"{code}: {why}")
        self.code = code
        self.why = why


# ---------------------------------------------------------------------------------------------
# Limits (section 15)

MAX_RECORD_BYTES = 16384
MAX_CLOCK_SKEW_SECS = 600
MAX_LISTING_LIFETIME_SECS = 15552000
MAX_VOUCH_LIFETIME_SECS = 63072000
MAX_GEOHASH_LEN = 6
MAX_NAME = 64
MAX_COMMUNITY = 64
MAX_ABOUT = 1000
MAX_CONTACT = 200
MAX_TITLE = 120
MAX_DESCRIPTION = 4000
MAX_TAGS = 12
MAX_TAG = 32
MAX_CONDITIONS = 1000
MAX_AVAILABILITY = 200
MAX_IN_RETURN = 500
MAX_LOAN_DAYS = 365
MAX_HOURS = 1000
MAX_MESSAGE = 2000
MAX_NOTE = 500
MAX_REVIEW_TEXT = 1000
MAX_FACETS = 6
MAX_VOUCH_CONTEXT = 200

HEADER_LEN = 42
SIGNATURE_LEN = 64

# ---------------------------------------------------------------------------------------------
# Record types and enumerations (sections 5 and 12)

TYPES = {
    1: "profile",
    2: "listing",
    3: "withdrawal",
    4: "proposal",
    5: "agreement",
    6: "handover",
    7: "return",
    8: "acknowledgement",
    9: "completion",
    10: "cancellation",
    11: "extension",
    12: "review",
    13: "review_commitment",
    14: "vouch",
    15: "revocation",
}
TYPE_CODES = {name: code for code, name in TYPES.items()}
CO_SIGNED = {"agreement", "extension"}

KIND = {1: "lend", 2: "share", 3: "swap", 4: "barter", 5: "give", 6: "want"}
CATEGORY = {
    1: "tools", 2: "garden", 3: "kitchen", 4: "kids", 5: "sports", 6: "transport", 7: "electronics",
    8: "books", 9: "household", 10: "clothing", 11: "music", 12: "camping", 31: "other",
    32: "repair", 33: "care", 34: "lessons", 35: "help", 63: "services",
}
RATING = {1: "positive", 2: "neutral", 3: "negative"}
FACET = {1: "communication", 2: "punctuality", 3: "as_described", 4: "care", 5: "friendliness"}
CANCEL_REASON = {1: "declined", 2: "withdrawn", 3: "cancelled", 4: "no_show", 5: "dispute"}
CONDITION = {1: "as_expected", 2: "damaged", 3: "incomplete"}


def signature_count(type_name):
    return 2 if type_name in CO_SIGNED else 1


def domain_prefix(type_name):
    return b"troc/v1/" + type_name.encode("ascii") + b"\x00"


# ---------------------------------------------------------------------------------------------
# Ed25519 points, for the key rules (section 7.1) and the R rules (section 8)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1)


def decompress(b):
    """Step 1 of 7.1: the point (x, y) for 32 bytes, y taken as the low 255 bits modulo p, or None.
    Returns (point, canonical) where canonical is step 2 (y < p, no sign bit on x = 0)."""
    y_raw = int.from_bytes(b, "little") & ((1 << 255) - 1)
    sign = b[31] >> 7
    y = y_raw % P
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None, False
    canonical = y_raw < P and not (x == 0 and sign == 1)
    if x & 1 != sign:
        x = (P - x) % P
    return (x, y), canonical


def point_add(a, b):
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return (x3, y3)


def is_small_order(pt):
    q = pt
    for _ in range(3):
        q = point_add(q, q)
    return q == IDENTITY


def check_key(b):
    """Section 7.1, in order: decodes, canonical, not small order."""
    pt, canonical = decompress(b)
    if pt is None:
        raise Reject("invalid_key", "not a curve point")
    if not canonical:
        raise Reject("invalid_key", "not the canonical encoding")
    if is_small_order(pt):
        raise Reject("weak_key", "a point of small order")
    return b


# ---------------------------------------------------------------------------------------------
# PeerIds and base58 (section 7.3)

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def b58encode(b):
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    zeros = len(b) - len(b.lstrip(b"\x00"))
    return "1" * zeros + out


def b58decode(s):
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    zeros = len(s) - len(s.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * zeros + body


def peer_id(key):
    return b58encode(PEER_ID_PREFIX + key)


def short_form(key):
    return peer_id(key)[8:16]


def key_from_text(s):
    """A key from its JSON form: a PeerId, or 64 hex digits (section 18)."""
    if len(s) == 64:
        try:
            return check_key(bytes.fromhex(s))
        except ValueError:
            pass
    raw = b58decode(s)
    if len(raw) != 38 or raw[:6] != PEER_ID_PREFIX:
        raise ValueError("not an ed25519 PeerId")
    return check_key(raw[6:])


# ---------------------------------------------------------------------------------------------
# Field encodings (section 2)


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if len(self.data) - self.pos < n:
            raise Reject("malformed", "truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n):
        return int.from_bytes(self.take(n), "big")


# A body field: (json name, wire kind, parameter). Kinds:
#   key, id, b16 (16 bytes), u16, u32, u64, enum (table), text (max), geohash (max), money, facet,
#   opt (inner kind, inner parameter), list (max, inner kind, inner parameter)
# A json name "terms.x" puts the value in the listing's terms object.

NOTE = [("agreement", "id", None), ("note", "text", MAX_NOTE)]

SCHEMAS = {
    "profile": [
        ("name", "text", MAX_NAME),
        ("community", "text", MAX_COMMUNITY),
        ("area", "geohash", MAX_GEOHASH_LEN),
        ("about", "text", MAX_ABOUT),
        ("contact", "text", MAX_CONTACT),
    ],
    "listing": [
        ("key", "b16", None),
        ("revision", "u32", None),
        ("kind", "enum", KIND),
        ("category", "enum", CATEGORY),
        ("title", "text", MAX_TITLE),
        ("description", "text", MAX_DESCRIPTION),
        ("tags", "list", (MAX_TAGS, "text", MAX_TAG)),
        ("terms.max_loan_days", "opt", ("u16", None)),
        ("terms.deposit", "opt", ("money", None)),
        ("terms.conditions", "text", MAX_CONDITIONS),
        ("terms.availability", "text", MAX_AVAILABILITY),
        ("terms.in_return", "text", MAX_IN_RETURN),
        ("terms.hours", "opt", ("u16", None)),
        ("community", "text", MAX_COMMUNITY),
        ("location", "geohash", MAX_GEOHASH_LEN),
        ("available_from", "opt", ("u64", None)),
        ("available_until", "opt", ("u64", None)),
        ("valid_until", "u64", None),
    ],
    "withdrawal": [
        ("listing_author", "key", None),
        ("listing_key", "b16", None),
        ("reason", "text", MAX_NOTE),
    ],
    "proposal": [
        ("counterparty", "key", None),
        ("listing_author", "key", None),
        ("listing_key", "b16", None),
        ("listing_revision", "u32", None),
        ("kind", "enum", KIND),
        ("start", "u64", None),
        ("end", "opt", ("u64", None)),
        ("message", "text", MAX_MESSAGE),
        ("in_return", "text", MAX_IN_RETURN),
        ("supersedes", "opt", ("id", None)),
    ],
    "agreement": [
        ("counterparty", "key", None),
        ("proposal", "id", None),
        ("listing_author", "key", None),
        ("listing_key", "b16", None),
        ("kind", "enum", KIND),
        ("start", "u64", None),
        ("due", "opt", ("u64", None)),
    ],
    "handover": NOTE,
    "return": NOTE,
    "completion": NOTE,
    "acknowledgement": [
        ("agreement", "id", None),
        ("subject", "id", None),
        ("condition", "enum", CONDITION),
        ("note", "text", MAX_NOTE),
    ],
    "cancellation": [
        ("deal", "id", None),
        ("reason", "enum", CANCEL_REASON),
        ("note", "text", MAX_NOTE),
    ],
    "extension": [
        ("agreement", "id", None),
        ("counterparty", "key", None),
        ("new_due", "u64", None),
    ],
    "review": [
        ("agreement", "id", None),
        ("subject", "key", None),
        ("rating", "enum", RATING),
        ("facets", "list", (MAX_FACETS, "facet", None)),
        ("text", "text", MAX_REVIEW_TEXT),
        ("nonce", "b16", None),
    ],
    "review_commitment": [
        ("agreement", "id", None),
        ("subject", "key", None),
        ("review", "id", None),
    ],
    "vouch": [
        ("subject", "key", None),
        ("context", "text", MAX_VOUCH_CONTEXT),
        ("expires_at", "u64", None),
    ],
    "revocation": [
        ("target_author", "key", None),
        ("target", "id", None),
        ("reason", "text", MAX_NOTE),
    ],
}


def read_field(r, kind, param):
    if kind == "key":
        return check_key(r.take(32))
    if kind == "id":
        return r.take(32)
    if kind == "b16":
        return r.take(16)
    if kind == "u16":
        return r.uint(2)
    if kind == "u32":
        return r.uint(4)
    if kind == "u64":
        return r.uint(8)
    if kind == "enum":
        code = r.uint(1)
        if code not in param:
            raise Reject("invalid_value", "unknown code")
        return code
    if kind in ("text", "geohash"):
        n = r.uint(2)
        if n > param:
            code = "location_too_precise" if kind == "geohash" else "field_too_long"
            raise Reject(code, f"length {n} over {param}")
        raw = r.take(n)
        try:
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise Reject("malformed", "text is not UTF-8")
    if kind == "money":
        return (r.uint(4), r.take(3))
    if kind == "facet":
        return (read_field(r, "enum", FACET), read_field(r, "enum", RATING))
    if kind == "opt":
        tag = r.uint(1)
        if tag == 0:
            return None
        if tag == 1:
            return read_field(r, *param)
        raise Reject("malformed", "option tag")
    if kind == "list":
        limit, inner, inner_param = param
        n = r.uint(1)
        if n > limit:
            raise Reject("too_many_items", f"{n} items over {limit}")
        return [read_field(r, inner, inner_param) for _ in range(n)]
    raise AssertionError(kind)


def write_field(out, kind, param, v):
    if kind in ("key", "id", "b16"):
        out += v
    elif kind == "u16":
        out += v.to_bytes(2, "big")
    elif kind == "u32":
        out += v.to_bytes(4, "big")
    elif kind == "u64":
        out += v.to_bytes(8, "big")
    elif kind == "enum":
        out.append(v)
    elif kind in ("text", "geohash"):
        b = v.encode("utf-8")
        out += len(b).to_bytes(2, "big") + b
    elif kind == "money":
        out += v[0].to_bytes(4, "big") + v[1]
    elif kind == "facet":
        out += bytes([v[0], v[1]])
    elif kind == "opt":
        if v is None:
            out.append(0)
        else:
            out.append(1)
            write_field(out, param[0], param[1], v)
    elif kind == "list":
        out.append(len(v))
        for item in v:
            write_field(out, param[1], param[2], item)
    else:
        raise AssertionError(kind)


# ---------------------------------------------------------------------------------------------
# Text rules (section 11)

WHITE_SPACE = set(chr(c) for c in list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680]
                  + list(range(0x2000, 0x200B)) + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
GEOHASH = set("0123456789bcdefghjkmnpqrstuvwxyz")
SLUG = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def forbidden(c, multi_line):
    o = ord(c)
    if c == "\t":
        return False
    if c == "\n":
        return not multi_line
    return o <= 0x1F or 0x7F <= o <= 0x9F or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069


def check_text(s, lo, hi, multi_line):
    n = len(s.encode("utf-8"))
    if n > hi:
        raise Reject("field_too_long")
    if n < lo:
        raise Reject("field_empty")
    if any(forbidden(c, multi_line) for c in s):
        raise Reject("forbidden_character")
    if lo > 0 and all(c in WHITE_SPACE for c in s):
        raise Reject("field_empty", "only white space")


def check_slug(s, hi):
    if len(s.encode("utf-8")) > hi:
        raise Reject("field_too_long")
    if not s:
        raise Reject("field_empty")
    if not all(c in SLUG for c in s) or s.startswith("-") or s.endswith("-") or "--" in s:
        raise Reject("invalid_value", "not a slug")


def check_geohash(s):
    if len(s.encode("utf-8")) > MAX_GEOHASH_LEN:
        raise Reject("location_too_precise")
    if not all(c in GEOHASH for c in s):
        raise Reject("invalid_value", "not a geohash")


def note(s, hi):
    check_text(s, 0, hi, True)


# ---------------------------------------------------------------------------------------------
# Body rules (section 13), in order


def rules(t, author, created_at, b):
    if t == "profile":
        check_text(b["name"], 1, MAX_NAME, False)
        if b["community"]:
            check_slug(b["community"], MAX_COMMUNITY)
        check_geohash(b["area"])
        check_text(b["about"], 0, MAX_ABOUT, True)
        check_text(b["contact"], 0, MAX_CONTACT, False)
    elif t == "listing":
        kind, category = KIND[b["kind"]], b["category"]
        if b["revision"] == 0:
            raise Reject("invalid_value", "revision 0")
        check_text(b["title"], 1, MAX_TITLE, False)
        check_text(b["description"], 0, MAX_DESCRIPTION, True)
        if len(b["tags"]) > MAX_TAGS:
            raise Reject("too_many_items")
        for i, tag in enumerate(b["tags"]):
            check_slug(tag, MAX_TAG)
            if tag in b["tags"][:i]:
                raise Reject("invalid_value", "duplicate tag")
        days = b["terms.max_loan_days"]
        if days is not None:
            if kind not in ("lend", "want"):
                raise Reject("invalid_value", "max_loan_days")
            if not 1 <= days <= MAX_LOAN_DAYS:
                raise Reject("invalid_value", "max_loan_days range")
        deposit = b["terms.deposit"]
        if deposit is not None:
            if kind not in ("lend", "share"):
                raise Reject("invalid_value", "deposit")
            if not all(0x41 <= c <= 0x5A for c in deposit[1]):
                raise Reject("invalid_value", "currency")
        check_text(b["terms.conditions"], 0, MAX_CONDITIONS, True)
        check_text(b["terms.availability"], 0, MAX_AVAILABILITY, False)
        if kind in ("swap", "barter"):
            check_text(b["terms.in_return"], 1, MAX_IN_RETURN, True)
        elif kind == "want":
            check_text(b["terms.in_return"], 0, MAX_IN_RETURN, True)
        elif b["terms.in_return"]:
            raise Reject("invalid_value", "in_return")
        hours = b["terms.hours"]
        if hours is not None:
            if category < 32:
                raise Reject("invalid_value", "hours on a thing")
            if not 1 <= hours <= MAX_HOURS:
                raise Reject("invalid_value", "hours range")
        check_slug(b["community"], MAX_COMMUNITY)
        check_geohash(b["location"])
        af, au = b["available_from"], b["available_until"]
        if af is not None and au is not None and af > au:
            raise Reject("invalid_value", "available_until before available_from")
        if b["valid_until"] <= created_at:
            raise Reject("invalid_value", "valid_until")
        if b["valid_until"] - created_at > MAX_LISTING_LIFETIME_SECS:
            raise Reject("invalid_value", "lifetime")
    elif t == "withdrawal":
        if b["listing_author"] != author:
            raise Reject("not_own_record")
        note(b["reason"], MAX_NOTE)
    elif t == "proposal":
        if b["counterparty"] == author:
            raise Reject("self_reference")
        if b["listing_author"] not in (author, b["counterparty"]):
            raise Reject("invalid_value", "listing_author")
        if b["listing_revision"] == 0:
            raise Reject("invalid_value", "listing_revision")
        if b["end"] is not None and b["end"] <= b["start"]:
            raise Reject("invalid_value", "end")
        note(b["message"], MAX_MESSAGE)
        note(b["in_return"], MAX_IN_RETURN)
    elif t == "agreement":
        if b["counterparty"] == author:
            raise Reject("self_reference")
        if b["listing_author"] not in (author, b["counterparty"]):
            raise Reject("invalid_value", "listing_author")
        kind, due = KIND[b["kind"]], b["due"]
        if kind == "lend" and due is None:
            raise Reject("invalid_value", "a loan needs a due date")
        if kind in ("lend", "share") and due is not None and due <= b["start"]:
            raise Reject("invalid_value", "due before start")
        if kind not in ("lend", "share") and due is not None:
            raise Reject("invalid_value", "due on a kind without return")
    elif t in ("handover", "return", "completion", "acknowledgement", "cancellation"):
        note(b["note"], MAX_NOTE)
    elif t == "extension":
        if b["counterparty"] == author:
            raise Reject("self_reference")
    elif t == "review":
        if b["subject"] == author:
            raise Reject("self_reference")
        if len(b["facets"]) > MAX_FACETS:
            raise Reject("too_many_items")
        seen = [f for f, _ in b["facets"]]
        if len(set(seen)) != len(seen):
            raise Reject("invalid_value", "facet twice")
        note(b["text"], MAX_REVIEW_TEXT)
    elif t == "review_commitment":
        if b["subject"] == author:
            raise Reject("self_reference")
    elif t == "vouch":
        if b["subject"] == author:
            raise Reject("self_reference")
        check_text(b["context"], 1, MAX_VOUCH_CONTEXT, False)
        if b["expires_at"] <= created_at:
            raise Reject("invalid_value", "expires_at")
        if b["expires_at"] - created_at > MAX_VOUCH_LIFETIME_SECS:
            raise Reject("invalid_value", "vouch lifetime")
    elif t == "revocation":
        if b["target_author"] != author:
            raise Reject("not_own_record")
        note(b["reason"], MAX_NOTE)


# ---------------------------------------------------------------------------------------------
# Records: decode, clock, signatures (section 10)


class Record:
    def __init__(self, type_name, author, created_at, body, content, signatures):
        self.type = type_name
        self.author = author
        self.created_at = created_at
        self.body = body
        self.content = content
        self.signatures = signatures
        self.message = domain_prefix(type_name) + content
        self.id = hashlib.sha256(self.message).digest()


def decode(data):
    """Section 10.1."""
    if len(data) > MAX_RECORD_BYTES:
        raise Reject("too_large")
    if len(data) < HEADER_LEN:
        if len(data) >= 1 and data[0] != 1:
            raise Reject("unknown_version")
        if len(data) >= 2 and data[1] not in TYPES:
            raise Reject("unknown_type")
        raise Reject("malformed", "shorter than a header")
    r = Reader(data)
    if r.uint(1) != 1:
        raise Reject("unknown_version")
    code = r.uint(1)
    if code not in TYPES:
        raise Reject("unknown_type")
    t = TYPES[code]
    author = check_key(r.take(32))
    created_at = r.uint(8)
    body = {}
    for name, kind, param in SCHEMAS[t]:
        body[name] = read_field(r, kind, param)
    content = data[:r.pos]
    rest = data[r.pos:]
    if len(rest) % SIGNATURE_LEN:
        raise Reject("malformed", "signature section")
    have, need = len(rest) // SIGNATURE_LEN, signature_count(t)
    if have < need:
        raise Reject("missing_signature")
    if have > need:
        raise Reject("malformed", "too many signatures")
    rules(t, author, created_at, body)
    sigs = [rest[i:i + SIGNATURE_LEN] for i in range(0, len(rest), SIGNATURE_LEN)]
    return Record(t, author, created_at, body, content, sigs)


def check_time(rec, now):
    """Section 10.2."""
    if rec.created_at > now + MAX_CLOCK_SKEW_SECS:
        raise Reject("from_future")
    expiry = {"listing": "valid_until", "vouch": "expires_at"}.get(rec.type)
    if expiry and rec.body[expiry] <= now:
        raise Reject("expired")


def verify_one(key, message, sig):
    """Section 8: S < L; R decodes, canonical, not of small order; then the cofactorless equation."""
    r_bytes, s_bytes = sig[:32], sig[32:]
    if int.from_bytes(s_bytes, "little") >= L:
        return False
    pt, canonical = decompress(r_bytes)
    if pt is None or not canonical or is_small_order(pt):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, message)
        return True
    except InvalidSignature:
        return False


def verify(rec):
    """Section 10.3."""
    signers = [rec.author]
    if rec.type in CO_SIGNED:
        signers.append(rec.body["counterparty"])
    for key, sig in zip(signers, rec.signatures):
        if not verify_one(key, rec.message, sig):
            raise Reject("bad_signature")


def validate(data, now):
    rec = decode(data)
    check_time(rec, now)
    verify(rec)
    return rec


# ---------------------------------------------------------------------------------------------
# JSON view (section 18) and encoding from it


def to_json_value(kind, param, v):
    if kind == "key":
        return peer_id(v)
    if kind in ("id", "b16"):
        return v.hex()
    if kind == "enum":
        return param[v]
    if kind == "money":
        return {"amount_minor": v[0], "currency": v[1].decode("ascii")}
    if kind == "facet":
        return {"facet": FACET[v[0]], "rating": RATING[v[1]]}
    if kind == "list":
        return [to_json_value(param[1], param[2], x) for x in v]
    if kind == "opt":
        return to_json_value(param[0], param[1], v)
    return v


def body_json(rec):
    out = {"type": rec.type}
    if rec.type == "listing":
        out["terms"] = {}
    for name, kind, param in SCHEMAS[rec.type]:
        v = rec.body[name]
        if kind == "opt" and v is None:
            continue
        if name.startswith("terms.") and kind == "text" and v == "":
            continue
        value = to_json_value(kind, param, v)
        if name.startswith("terms."):
            out["terms"][name[6:]] = value
        else:
            out[name] = value
    return out


def from_json_value(kind, param, v):
    if kind == "key":
        return key_from_text(v)
    if kind == "id":
        b = bytes.fromhex(v)
        assert len(b) == 32
        return b
    if kind == "b16":
        b = bytes.fromhex(v)
        assert len(b) == 16
        return b
    if kind == "enum":
        return {name: code for code, name in param.items()}[v]
    if kind == "money":
        assert set(v) == {"amount_minor", "currency"}
        return (v["amount_minor"], v["currency"].encode("ascii"))
    if kind == "facet":
        assert set(v) == {"facet", "rating"}
        return (from_json_value("enum", FACET, v["facet"]), from_json_value("enum", RATING, v["rating"]))
    if kind == "list":
        return [from_json_value(param[1], param[2], x) for x in v]
    if kind == "opt":
        return None if v is None else from_json_value(param[0], param[1], v)
    return v


def encode_content(type_name, author, created_at, body):
    """The content of a record from its body's JSON view (missing members are empty or absent)."""
    out = bytearray([1, TYPE_CODES[type_name]]) + author + created_at.to_bytes(8, "big")
    known = {"type"}
    terms = body.get("terms", {})
    for name, kind, param in SCHEMAS[type_name]:
        if name.startswith("terms."):
            v = terms.get(name[6:])
        else:
            v = body.get(name)
            known.add(name)
        if v is None:
            v = {"text": "", "geohash": "", "list": [], "opt": None}[kind]
        write_field(out, kind, param, from_json_value(kind, param, v))
    if type_name == "listing":
        known.add("terms")
    unknown = set(body) - known
    assert not unknown, f"unknown members {unknown}"
    return bytes(out)


def public_key_of(seed):
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    return sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(seed, message):
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


# ---------------------------------------------------------------------------------------------
# The vectors

# Codes this implementation must give exactly; for the others it reports agreement per vector.
REQUIRED_CODES = {
    "malformed", "too_large", "unknown_version", "unknown_type", "bad_signature", "missing_signature",
    "field_too_long",
}


def check_valid(v):
    """Returns a list of problems with one valid vector."""
    problems = []

    def expect(what, got, want):
        if got != want:
            problems.append(f"{what}: got {got!r}, expected {want!r}")

    seeds = [bytes.fromhex(s["seed"]) for s in v["signers"]]
    keys = [public_key_of(s) for s in seeds]
    for k, s in zip(keys, v["signers"]):
        expect("public key", k.hex(), s["public_key"])
        expect("peer id", peer_id(k), s["peer_id"])
        expect("short form", short_form(k), s["short"])
    expect("signer count", len(seeds), signature_count(v["type"]))
    body = v["body"]
    expect("body type", body.get("type"), v["type"])
    content = encode_content(v["type"], keys[0], v["created_at"], body)
    expect("content", content.hex(), v["content_hex"])
    message = domain_prefix(v["type"]) + content
    expect("signed message", message.hex(), v["signed_message_hex"])
    expect("id", hashlib.sha256(message).hexdigest(), v["id"])
    sigs = [sign(s, message) for s in seeds]
    expect("signatures", [s.hex() for s in sigs], v["signatures"])
    expect("bytes", (content + b"".join(sigs)).hex(), v["bytes_hex"])
    if v["type"] in CO_SIGNED:
        expect("partially signed form", (content + sigs[0]).hex(), v.get("partially_signed_hex"))
        try:
            decode(bytes.fromhex(v["partially_signed_hex"]))
            problems.append("the partially signed form is accepted as a record")
        except Reject as e:
            expect("partially signed form's code", e.code, "missing_signature")
    try:
        rec = validate(bytes.fromhex(v["bytes_hex"]), v["now"])
    except Reject as e:
        problems.append(f"refused with {e.code} ({e.why})")
        return problems
    expect("decoded id", rec.id.hex(), v["id"])
    expect("decoded author", peer_id(rec.author), v["signers"][0]["peer_id"])
    expect("decoded type", rec.type, v["type"])
    expect("decoded created_at", rec.created_at, v["created_at"])
    expect("JSON view of the body", body_json(rec), body)
    return problems


def check_vectors(path):
    """Checks every vector of `path`; returns True when everything required agrees."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    ok = True
    if doc.get("format_version") != 1:
        print(f"unknown format_version {doc.get('format_version')}")
        return False
    for k in doc["keys"]:
        key = public_key_of(bytes.fromhex(k["seed"]))
        if key.hex() != k["public_key"] or peer_id(key) != k["peer_id"] or short_form(key) != k["short"]:
            print(f"FAIL key {k['name']}: derived {key.hex()} {peer_id(key)} {short_form(key)}")
            ok = False

    valid_failures = 0
    for v in doc["valid"]:
        problems = check_valid(v)
        if problems:
            valid_failures += 1
            ok = False
            print(f"FAIL valid {v['name']}:")
            for p in problems:
                print(f"    {p}")
        else:
            print(f"ok   valid {v['name']}")

    same = 0
    for v in doc["invalid"]:
        try:
            validate(bytes.fromhex(v["bytes_hex"]), v["now"])
            print(f"FAIL invalid {v['name']}: accepted (expected {v['code']})")
            ok = False
            continue
        except Reject as e:
            got = e.code
        if got == v["code"]:
            same += 1
            print(f"ok   invalid {v['name']}: {got}")
        elif v["code"] in REQUIRED_CODES or got in REQUIRED_CODES:
            print(f"FAIL invalid {v['name']}: refused with {got}, expected {v['code']}")
            ok = False
        else:
            print(f"diff invalid {v['name']}: refused with {got}, troc says {v['code']}")

    n_valid, n_invalid = len(doc["valid"]), len(doc["invalid"])
    if valid_failures == 0:
        print(f"valid vectors: all {n_valid} reproduced from their body and accepted")
    else:
        print(f"valid vectors: {valid_failures} of {n_valid} FAILED")
    if same == n_invalid:
        print(f"invalid vectors: all {n_invalid} refused with the same code")
    else:
        print(f"invalid vectors: {same} of {n_invalid} refused with the same code")
    print("result:", "ok" if ok else "FAILED")
    return ok


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: troc_records.py docs/test-vectors.json\n")
        return 2
    return 0 if check_vectors(argv[1]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
