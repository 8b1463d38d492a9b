"""OTLP trace codecs: protobuf and OTLP/JSON, both ways, and the files that hold them.

Wire types are imported under ``PB2`` aliases and stay at this boundary.

OTLP/JSON is not protobuf's JSON mapping: trace and span ids are lowercase
hex, not base64 (``json_format.Parse`` would silently decode a 32-hex trace id
as base64 into 24 bytes), enums are integers and 64-bit integers are decimal
strings. Decoding converts ids first and checks their lengths (16 and 8 bytes);
empty ids are tolerated where the specification's own examples use them
(``parentSpanId: ""``); unknown fields are ignored.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError as PB2DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue as PB2AnyValue
from opentelemetry.proto.common.v1.common_pb2 import KeyValue as PB2KeyValue

from ._errors import DecodeError

KIND_NAMES = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_NAMES = ("UNSET", "OK", "ERROR")
KIND_BY_NAME = {n: i for i, n in enumerate(KIND_NAMES)}
STATUS_BY_NAME = {n: i for i, n in enumerate(STATUS_NAMES)}
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

_HEX = re.compile(r"[0-9a-fA-F]*")


# -- attribute values ------------------------------------------------------------------------
#
# In the store, attributes are one JSON object per span: strings, booleans, integers and
# floats as themselves, arrays as lists, kvlists as objects. Two values JSON cannot hold are
# wrapped: bytes as {"bytesValue": base64} and non-finite doubles as {"doubleValue": "NaN"}
# (or "Infinity", "-Infinity"), the OTLP/JSON spellings. An unset value is null.


def any_from_proto(v: PB2AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        d = v.double_value
        if d != d or d in (float("inf"), float("-inf")):
            return {"doubleValue": "NaN" if d != d else ("Infinity" if d > 0 else "-Infinity")}
        return d
    if which == "bool_value":
        return v.bool_value
    if which == "array_value":
        return [any_from_proto(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_from_proto(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return {"bytesValue": base64.b64encode(v.bytes_value).decode("ascii")}
    return None


def attrs_from_proto(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        if which == "string_value":
            out[kv.key] = v.string_value
        elif which == "int_value":
            out[kv.key] = v.int_value
        elif which == "bool_value":
            out[kv.key] = v.bool_value
        else:
            out[kv.key] = any_from_proto(v)
    return out


def any_from_json(v: Any, where: str = "attribute") -> Any:
    if not isinstance(v, dict):
        raise DecodeError(f"{where}: AnyValue must be an object, got {type(v).__name__}")
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        try:
            n = int(v["intValue"])
        except (TypeError, ValueError):
            raise DecodeError(f"{where}: intValue {v['intValue']!r} is not an integer") from None
        if not INT64_MIN <= n <= INT64_MAX:
            raise DecodeError(f"{where}: intValue {n} does not fit in 64-bit int")
        return n
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        d = v["doubleValue"]
        if isinstance(d, str):
            if d in ("NaN", "Infinity", "-Infinity"):
                return {"doubleValue": d}
            try:
                return float(d)
            except ValueError:
                raise DecodeError(f"{where}: doubleValue {d!r} is not a number") from None
        return float(d)
    if "arrayValue" in v:
        return [any_from_json(x, where) for x in (v["arrayValue"] or {}).get("values") or ()]
    if "kvlistValue" in v:
        return attrs_from_json((v["kvlistValue"] or {}).get("values") or (), where)
    if "bytesValue" in v:
        b = v["bytesValue"]
        try:
            # Stored as sent (base64), checked now: an export decodes it.
            bytes_from_b64(b)
        except (TypeError, ValueError):  # binascii.Error is a ValueError
            raise DecodeError(f"{where}: bytesValue {str(b)[:40]!r} is not base64") from None
        return {"bytesValue": b}
    return None


def bytes_from_b64(text: str) -> bytes:
    """OTLP/JSON bytes: base64, standard or URL-safe, padding optional (ValueError otherwise)."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    padded = text + "=" * (-len(text) % 4)
    alphabet = b"-_" if "-" in text or "_" in text else None
    return base64.b64decode(padded, altchars=alphabet, validate=True)


def attrs_from_json(kvs: Any, where: str = "attributes") -> dict[str, Any]:
    if not isinstance(kvs, list):
        raise DecodeError(f"{where}: must be a list of key/value objects")
    out: dict[str, Any] = {}
    for kv in kvs:
        try:
            key = kv["key"]
        except (TypeError, KeyError):
            raise DecodeError(f"{where}: an attribute has no key") from None
        v = kv.get("value")
        if v is None:
            out[key] = None
        elif "stringValue" in v:
            out[key] = v["stringValue"]
        else:
            out[key] = any_from_json(v, f"attribute {key!r}")
    return out


def fill_any(target: PB2AnyValue, value: Any) -> None:
    """Set ``target`` from a store attribute value (the inverse of ``any_from_proto``)."""
    if value is None:
        return
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer attribute value {value} does not fit in OTLP's 64-bit int")
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, list | tuple):
        arr = target.array_value
        arr.SetInParent()
        for item in value:
            fill_any(arr.values.add(), item)
    elif isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("bytesValue"), str):
            target.bytes_value = bytes_from_b64(value["bytesValue"])
        elif len(value) == 1 and value.get("doubleValue") in ("NaN", "Infinity", "-Infinity"):
            target.double_value = float(value["doubleValue"].replace("Infinity", "inf"))
        else:
            kvl = target.kvlist_value
            kvl.SetInParent()
            for k, item in value.items():
                kv = kvl.values.add()
                kv.key = k
                fill_any(kv.value, item)
    else:
        raise TypeError(f"cannot store attribute value of type {type(value).__name__}")


def fill_attrs(target: Any, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        kv: PB2KeyValue = target.add()
        kv.key = k
        fill_any(kv.value, v)


# -- ids -------------------------------------------------------------------------------------


def check_hex_id(value: Any, nbytes: int, what: str, *, allow_empty: bool) -> str:
    """A lowercase hex id of ``nbytes`` bytes, or a DecodeError saying what is wrong."""
    if value is None or value == "":
        if allow_empty:
            return ""
        raise DecodeError(f"{what} is empty")
    if not isinstance(value, str):
        raise DecodeError(f"{what} must be a hex string, got {type(value).__name__}")
    if len(value) == nbytes * 2 and _HEX.fullmatch(value):
        return value.lower()
    if not _HEX.fullmatch(value):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None and len(raw) == nbytes:
            raise DecodeError(
                f"{what} {value!r} looks like base64; OTLP/JSON ids are {nbytes * 2} hex digits"
                f" (this one would be {raw.hex()!r})"
            )
        raise DecodeError(f"{what} {value!r} is not hex")
    raise DecodeError(f"{what} {value!r} has {len(value)} hex digits, expected {nbytes * 2}")


def check_bytes_id(value: bytes, nbytes: int, what: str, *, allow_empty: bool) -> str:
    if not value:
        if allow_empty:
            return ""
        raise DecodeError(f"{what} is empty")
    if len(value) != nbytes:
        raise DecodeError(f"{what} has {len(value)} bytes, expected {nbytes}")
    return value.hex()


# -- whole requests --------------------------------------------------------------------------

_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def _ids_hex_to_b64(node: Any, where: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            n = _ID_FIELDS.get(key)
            if n is not None:
                allow = key == "parentSpanId"
                h = check_hex_id(value, n, f"{where}{key}", allow_empty=allow)
                node[key] = base64.b64encode(bytes.fromhex(h)).decode("ascii") if h else ""
            elif isinstance(value, (dict, list)):
                _ids_hex_to_b64(value, where)
    elif isinstance(node, list):
        for item in node:
            _ids_hex_to_b64(item, where)


def _ids_b64_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS:
                node[key] = base64.b64decode(value).hex()
            elif isinstance(value, (dict, list)):
                _ids_b64_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _ids_b64_to_hex(item)


def decode_json(
    data: bytes | str | dict[str, Any], *, source: str = "<input>", line: int | None = None
) -> PB2ExportTraceServiceRequest:
    """An OTLP/JSON ExportTraceServiceRequest as a protobuf message."""
    try:
        obj = (
            orjson.loads(data)
            if isinstance(data, (bytes, str))
            else orjson.loads(orjson.dumps(data))
        )
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}", source=source, line=line) from None
    if not isinstance(obj, dict) or "resourceSpans" not in obj:
        raise DecodeError("not an OTLP trace request (no resourceSpans)", source=source, line=line)
    try:
        _ids_hex_to_b64(obj, "")
        req = PB2ExportTraceServiceRequest()
        json_format.ParseDict(obj, req, ignore_unknown_fields=True)
    except DecodeError as exc:
        raise exc.at(source, line) from None
    except json_format.ParseError as exc:
        raise DecodeError(f"not valid OTLP/JSON: {exc}", source=source, line=line) from None
    return req


def encode_json(req: PB2ExportTraceServiceRequest) -> bytes:
    """One line of OTLP/JSON (no trailing newline); the same message gives the same bytes."""
    # MessageToDict recurses a few frames per level of a key-value list: a 250-deep one
    # passes Python's default limit. Its frames are Python frames, not C stack.
    with _recursion_room():
        obj = json_format.MessageToDict(
            req, use_integers_for_enums=True, preserving_proto_field_name=False
        )
        _ids_b64_to_hex(obj)
        try:
            return orjson.dumps(obj)
        except orjson.JSONEncodeError:
            # orjson stops at 255 levels of JSON (each key-value list level is four).
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@contextlib.contextmanager
def _recursion_room(limit: int = 20_000) -> Iterator[None]:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def decode_proto(
    data: bytes | memoryview, *, source: str = "<input>", line: int | None = None
) -> PB2ExportTraceServiceRequest:
    """A protobuf ExportTraceServiceRequest; a truncated or foreign message is a DecodeError."""
    req = PB2ExportTraceServiceRequest()
    try:
        req.ParseFromString(data)
    except PB2DecodeError as exc:
        raise DecodeError(
            f"not a valid OTLP protobuf message ({exc or 'truncated'})", source=source, line=line
        ) from None
    return req


# -- files -----------------------------------------------------------------------------------
# Reading files lives in tracer._files; these names stay importable from here.

from ._files import Format as Format  # noqa: E402
from ._files import Record as Record  # noqa: E402
from ._files import read_records as read_records  # noqa: E402
