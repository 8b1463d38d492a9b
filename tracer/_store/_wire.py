"""OTLP protobuf requests walked by compiled loops: a plain span's fields in columns, no Python per field.

Reading a span through the protobuf runtime costs about ten microseconds of Python: each
field and each attribute becomes a Python object, then a row. This module reads the
request's wire bytes instead, with loops compiled by numba, and lays every span and
attribute out as numbers and byte offsets. Arrow columns and the attribute JSON are made
from those in bulk.

Who decides what:

* upb parses the request first (``decode_proto``). It is the judge of valid protobuf
  (UTF-8, truncation, nesting) and its error is the one a user sees. The walk only runs
  on bytes upb accepted, and still checks every bound it reads.
* The walk marks each span *plain* or not. A plain span is the shape SDKs send for agent
  work: ids of the right sizes and not all zero, each field once, a known kind that is
  not a producer or consumer, a known status, times in order within 1970-2262, no
  links, events (if any) with times in range and names outside ``agentrace.*``, and
  attributes (its own, its events') that are strings, booleans, integers, finite
  doubles or unset, with distinct keys, none of them read by ``classify`` beyond the
  GenAI operation and agent names (which must be strings). Every other span goes through
  ``Batch._proto_span`` from upb's message, as it always did, so validation and its
  messages live in one place.
* Attribute JSON is written here byte for byte as ``orjson.dumps`` writes the same
  dict; doubles are formatted by orjson itself (one call for all of them).

``walk`` answers ``None`` when the request's layout is not one it reads (fields where
the OTLP schema has none, say); the caller then takes the whole request the usual way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from numba import njit

from .. import conventions as c
from .._mapping import CLASSIFY_KEYS

# Span table columns.
(S_TID, S_SID, S_PID, S_TS_OFF, S_TS_LEN, S_NAME_OFF, S_NAME_LEN, S_KIND, S_FLAGS,
 S_START, S_END, S_DA, S_DE, S_DL, S_MSG_OFF, S_MSG_LEN, S_CODE, S_A0, S_AN, S_SLOW, S_OP,
 S_AGENT, S_E0) = range(23)  # fmt: skip
_NS = 23
# Event table columns: its span, time, name, attributes, dropped attributes count.
E_SPAN, E_TIME, E_NAME_OFF, E_NAME_LEN, E_A0, E_AN, E_DROPPED = range(7)
_NE = 7
_AGENTRACE = np.frombuffer(b"agentrace.", np.uint8)
# Attribute table columns: key offset and length, value type, string value offset and
# length, integer value (a bool as 0/1, a double as its IEEE bits).
A_KOFF, A_KLEN, A_TYPE, A_VOFF, A_VLEN, A_INT = range(6)
_NA = 6
T_NULL, T_STR, T_BOOL, T_INT, T_DBL = range(5)
# Scope table columns: its resource's index, its first span, one past its last span.
_NSS = 3

_MALFORMED = -1
_TOP = np.uint64(1) << np.uint64(63)


@njit(cache=True, nogil=True, inline="always")
def _varint(buf: Any, i: int, end: int) -> tuple[Any, int]:
    v = np.uint64(0)
    shift = 0
    while i < end:
        b = buf[i]
        i += 1
        if shift < 64:
            v |= np.uint64(b & 0x7F) << np.uint64(shift)
        if b < 0x80:
            return v, i
        shift += 7
        if shift >= 70:
            return v, -1
    return v, -1


@njit(cache=True, nogil=True, inline="always")
def _len(buf: Any, i: int, end: int) -> tuple[Any, Any]:
    """A length-delimited field's value: (start, end), or (-1, -1) if it overruns ``end``."""
    ln, i = _varint(buf, i, end)
    if i < 0 or ln > np.uint64(end - i):
        return -1, -1
    return i, i + np.int64(ln)


@njit(cache=True, nogil=True, inline="always")
def _skip(buf: Any, i: int, end: int, wt: Any) -> Any:
    if wt == 0:
        _, i = _varint(buf, i, end)
        return i
    if wt == 1:
        return i + 8 if i + 8 <= end else -1
    if wt == 2:
        _, j = _len(buf, i, end)
        return j
    if wt == 5:
        return i + 4 if i + 4 <= end else -1
    return -1


@njit(cache=True, nogil=True, inline="always")
def _fixed(buf: Any, i: int, n: int) -> Any:
    v = np.uint64(0)
    for k in range(n):
        v |= np.uint64(buf[i + k]) << np.uint64(8 * k)
    return v


@njit(cache=True, nogil=True, inline="always")
def _zero(buf: Any, i: int, n: int) -> bool:
    for k in range(n):  # noqa: SIM110 (compiled: no generators)
        if buf[i + k] != 0:
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _key_class(buf: Any, off: int, ln: int, keys: Any, key_offs: Any) -> int:
    """Which of ``keys`` (concatenated, bounded by ``key_offs``) the key is, or -1."""
    for k in range(key_offs.shape[0] - 1):
        a = key_offs[k]
        if key_offs[k + 1] - a != ln:
            continue
        same = True
        for m in range(ln):
            if buf[off + m] != keys[a + m]:
                same = False
                break
        if same:
            return k
    return -1


@njit(cache=True, nogil=True, inline="always")
def _attribute(buf: Any, i: int, end: int, at: Any, row: int) -> int:
    """One KeyValue: 0 when plain, 1 when not, -1 when malformed. Fills ``at[row]``."""
    slow = 0
    koff = -1
    klen = 0
    typ = T_NULL
    voff = 0
    vlen = 0
    ival = np.int64(0)
    seen_value = False
    while i < end:
        tag, i = _varint(buf, i, end)
        if i < 0:
            return _MALFORMED
        f = tag >> np.uint64(3)
        wt = np.int64(tag & np.uint64(7))
        if wt == 2 and f == 1:
            s, e = _len(buf, i, end)
            if s < 0:
                return _MALFORMED
            if koff >= 0:
                slow = 1
            koff = s
            klen = e - s
            i = e
        elif wt == 2 and f == 2:
            s, e = _len(buf, i, end)
            if s < 0:
                return _MALFORMED
            if seen_value:
                slow = 1  # two values merge: upb's message says how
            seen_value = True
            i = e
            # AnyValue: exactly one scalar field (or none: an unset value).
            j = s
            fields = 0
            while j < e:
                vtag, j = _varint(buf, j, e)
                if j < 0:
                    return _MALFORMED
                vf = vtag >> np.uint64(3)
                vwt = np.int64(vtag & np.uint64(7))
                fields += 1
                if vf == 1 and vwt == 2:
                    vs, ve = _len(buf, j, e)
                    if vs < 0:
                        return _MALFORMED
                    typ = T_STR
                    voff = vs
                    vlen = ve - vs
                    j = ve
                elif (vf == 2 or vf == 3) and vwt == 0:
                    v, j = _varint(buf, j, e)
                    if j < 0:
                        return _MALFORMED
                    if vf == 2:
                        typ = T_BOOL
                        ival = np.int64(1) if v != np.uint64(0) else np.int64(0)
                    else:
                        typ = T_INT
                        ival = np.int64(v)
                elif vf == 4 and vwt == 1:
                    if j + 8 > e:
                        return _MALFORMED
                    bits = _fixed(buf, j, 8)
                    if (bits >> np.uint64(52)) & np.uint64(0x7FF) == np.uint64(0x7FF):
                        slow = 1  # NaN or an infinity: wrapped in the store
                    typ = T_DBL
                    ival = np.int64(bits)
                    j += 8
                else:
                    slow = 1  # arrays, key-value lists, bytes, or what this walk does not read
                    j = _skip(buf, j, e, vwt)
                    if j < 0:
                        return _MALFORMED
            if fields > 1:
                slow = 1
        else:
            slow = 1
            i = _skip(buf, i, end, wt)
            if i < 0:
                return _MALFORMED
    if koff < 0:
        koff = i  # no key: the empty string
    at[row, A_KOFF] = koff
    at[row, A_KLEN] = klen
    at[row, A_TYPE] = typ
    at[row, A_VOFF] = voff
    at[row, A_VLEN] = vlen
    at[row, A_INT] = ival
    return slow


@njit(cache=True, nogil=True)
def _same_keys(buf: Any, at: Any, a0: int, a1: int) -> bool:
    """Whether two of the attributes ``at[a0:a1]`` have the same key (a dict keeps the
    last value at the first key's place: not a plain span)."""
    for x in range(a0, a1):
        kx = at[x, A_KOFF]
        lx = at[x, A_KLEN]
        for y in range(a0, x):
            if at[y, A_KLEN] == lx:
                ky = at[y, A_KOFF]
                same = True
                for m in range(lx):
                    if buf[kx + m] != buf[ky + m]:
                        same = False
                        break
                if same:
                    return True
    return False


@njit(cache=True, nogil=True)
def _event(buf: Any, i: int, end: int, ev: Any, row: int, span: int, at: Any, nat: int) -> Any:
    """One Event into ``ev[row]``, its attributes from ``at[nat]``: (next attribute row,
    0 when plain, else 1), or (-1, 1) when malformed."""
    slow = 0
    seen = np.uint64(0)
    t = np.uint64(0)
    name_off = 0
    name_len = 0
    dropped = np.uint64(0)
    a0 = nat
    while i < end:
        tag, i = _varint(buf, i, end)
        if i < 0:
            return -1, 1
        f = tag >> np.uint64(3)
        wt = np.int64(tag & np.uint64(7))
        if f != 3 and f < 64:
            bit = np.uint64(1) << f
            if seen & bit:
                slow = 1
            seen |= bit
        if f == 1 and wt == 1:
            if i + 8 > end:
                return -1, 1
            t = _fixed(buf, i, 8)
            i += 8
        elif f == 2 and wt == 2:
            name_off, i = _len(buf, i, end)
            if name_off < 0:
                return -1, 1
            name_len = i - name_off
        elif f == 3 and wt == 2:
            s, e = _len(buf, i, end)
            if s < 0 or nat >= at.shape[0]:
                return -1, 1
            r = _attribute(buf, s, e, at, nat)
            if r < 0:
                return -1, 1
            slow |= r
            nat += 1
            i = e
        elif f == 4 and wt == 0:
            dropped, i = _varint(buf, i, end)
            if i < 0:
                return -1, 1
        else:
            slow = 1
            i = _skip(buf, i, end, wt)
            if i < 0:
                return -1, 1
    if t >= _TOP or dropped > np.uint64(0xFFFFFFFF) or _same_keys(buf, at, a0, nat):
        slow = 1
    if name_len >= 10:  # "agentrace.*" events are projected into other tables
        own = True
        for m in range(10):
            if buf[name_off + m] != _AGENTRACE[m]:
                own = False
                break
        if own:
            slow = 1
    ev[row, E_SPAN] = span
    ev[row, E_TIME] = np.int64(t)
    ev[row, E_NAME_OFF] = name_off
    ev[row, E_NAME_LEN] = name_len
    ev[row, E_A0] = a0
    ev[row, E_AN] = nat - a0
    ev[row, E_DROPPED] = np.int64(dropped & np.uint64(0xFFFFFFFF))
    return nat, slow


@njit(cache=True, nogil=True)
def _span(
    buf: Any, i: int, end: int, sp: Any, row: int, at: Any, nat: int, ev: Any, nev: int,
    keys: Any, key_offs: Any,
) -> Any:  # fmt: skip
    """One Span: fills ``sp[row]``, its attributes from ``at[nat]`` and its events from
    ``ev[nev]``; returns the next attribute and event rows, or (-1, -1) when malformed."""
    slow = 0
    seen = np.uint64(0)
    tid = -1
    sid = -1
    pid = -1
    ts_off = 0
    ts_len = 0
    name_off = 0
    name_len = 0
    kind = np.uint64(0)
    flags = np.uint64(0)
    start = np.uint64(0)
    stop = np.uint64(0)
    da = np.uint64(0)
    de = np.uint64(0)
    dl = np.uint64(0)
    msg_off = 0
    msg_len = 0
    code = np.uint64(0)
    a0 = nat
    a1 = nat  # one past the span's own attributes (events' attributes follow them)
    e0 = nev
    op = -1
    agent = -1
    while i < end:
        tag, i = _varint(buf, i, end)
        if i < 0:
            return _MALFORMED, _MALFORMED
        f = tag >> np.uint64(3)
        wt = np.int64(tag & np.uint64(7))
        if f != 9 and f != 11 and f < 64:
            bit = np.uint64(1) << f
            if seen & bit:
                slow = 1  # a field twice: upb keeps the last, or merges
            seen |= bit
        if wt == 2:
            s, e = _len(buf, i, end)
            if s < 0:
                return _MALFORMED, _MALFORMED
            i = e
            ln = e - s
            if f == 1:
                tid = s
                if ln != 16 or _zero(buf, s, 16):
                    slow = 1
            elif f == 2:
                sid = s
                if ln != 8 or _zero(buf, s, 8):
                    slow = 1
            elif f == 3:
                ts_off = s
                ts_len = ln
            elif f == 4:
                if ln == 8 and not _zero(buf, s, 8):
                    pid = s
                elif ln != 0:
                    slow = 1
            elif f == 5:
                name_off = s
                name_len = ln
            elif f == 9:
                if nat >= at.shape[0]:
                    return _MALFORMED, _MALFORMED
                if nev > e0:
                    slow = 1  # an attribute after an event: not one run of rows
                r = _attribute(buf, s, e, at, nat)
                if r < 0:
                    return _MALFORMED, _MALFORMED
                if r > 0:
                    slow = 1
                else:
                    kc = _key_class(buf, at[nat, A_KOFF], at[nat, A_KLEN], keys, key_offs)
                    if kc == 0 or kc == 1:
                        if at[nat, A_TYPE] != T_STR:
                            slow = 1
                        elif kc == 0:
                            op = nat
                        else:
                            agent = nat
                    elif kc > 1:
                        slow = 1  # classify reads it: the usual way
                nat += 1
                a1 = nat
            elif f == 15:
                j = s
                while j < e:
                    stag, j = _varint(buf, j, e)
                    if j < 0:
                        return _MALFORMED, _MALFORMED
                    sf = stag >> np.uint64(3)
                    swt = np.int64(stag & np.uint64(7))
                    if sf == 2 and swt == 2:
                        ms, me = _len(buf, j, e)
                        if ms < 0:
                            return _MALFORMED, _MALFORMED
                        msg_off = ms
                        msg_len = me - ms
                        j = me
                    elif sf == 3 and swt == 0:
                        code, j = _varint(buf, j, e)
                        if j < 0:
                            return _MALFORMED, _MALFORMED
                    else:
                        slow = 1
                        j = _skip(buf, j, e, swt)
                        if j < 0:
                            return _MALFORMED, _MALFORMED
            elif f == 11:
                if nev >= ev.shape[0]:
                    return _MALFORMED, _MALFORMED
                nat, r = _event(buf, s, e, ev, nev, row, at, nat)
                if nat < 0:
                    return _MALFORMED, _MALFORMED
                slow |= r
                nev += 1
            else:
                slow = 1  # links, or what this walk does not read
        elif wt == 0:
            v, i = _varint(buf, i, end)
            if i < 0:
                return _MALFORMED, _MALFORMED
            if f == 6:
                kind = v
            elif f == 10:
                da = v
            elif f == 12:
                de = v
            elif f == 14:
                dl = v
            else:
                slow = 1
        elif wt == 1:
            if i + 8 > end:
                return _MALFORMED, _MALFORMED
            if f == 7:
                start = _fixed(buf, i, 8)
            elif f == 8:
                stop = _fixed(buf, i, 8)
            else:
                slow = 1
            i += 8
        elif wt == 5:
            if i + 4 > end:
                return _MALFORMED, _MALFORMED
            if f == 16:
                flags = _fixed(buf, i, 4)
            else:
                slow = 1
            i += 4
        else:
            return _MALFORMED, _MALFORMED
    big = np.uint64(0xFFFFFFFF)
    if (
        tid < 0 or sid < 0 or kind > np.uint64(3) or code > np.uint64(2)
        or start >= _TOP or stop >= _TOP or stop < start
        or da > big or de > big or dl > big
    ):  # fmt: skip
        slow = 1  # kinds 4 and 5 are producer and consumer: messaging facts
    if not slow and _same_keys(buf, at, a0, a1):
        slow = 1
    sp[row, S_TID] = tid
    sp[row, S_SID] = sid
    sp[row, S_PID] = pid
    sp[row, S_TS_OFF] = ts_off
    sp[row, S_TS_LEN] = ts_len
    sp[row, S_NAME_OFF] = name_off
    sp[row, S_NAME_LEN] = name_len
    sp[row, S_KIND] = np.int64(kind) if kind <= np.uint64(5) else 0
    sp[row, S_FLAGS] = np.int64(flags)
    sp[row, S_START] = np.int64(start)
    sp[row, S_END] = np.int64(stop)
    sp[row, S_DA] = np.int64(da & big)
    sp[row, S_DE] = np.int64(de & big)
    sp[row, S_DL] = np.int64(dl & big)
    sp[row, S_MSG_OFF] = msg_off
    sp[row, S_MSG_LEN] = msg_len
    sp[row, S_CODE] = np.int64(code) if code <= np.uint64(2) else 0
    sp[row, S_A0] = a0
    sp[row, S_AN] = a1 - a0
    sp[row, S_SLOW] = slow
    sp[row, S_OP] = op
    sp[row, S_AGENT] = agent
    sp[row, S_E0] = e0
    return nat, nev


@njit(cache=True, nogil=True)
def _span_rows(buf: Any, p: int, end: int) -> tuple[int, int]:
    """How many attribute rows (its own and its events') and event rows a Span will take,
    or (-1, -1) when malformed."""
    nat = 0
    nev = 0
    while p < end:
        tag, p = _varint(buf, p, end)
        if p < 0:
            return -1, -1
        if tag == np.uint64(74):  # attributes = 9
            nat += 1
        elif tag == np.uint64(90):  # events = 11: their attributes (= 3) too
            q, q_end = _len(buf, p, end)
            if q < 0:
                return -1, -1
            nev += 1
            while q < q_end:
                tag, q = _varint(buf, q, q_end)
                if q < 0:
                    return -1, -1
                if tag == np.uint64(26):
                    nat += 1
                q = _skip(buf, q, q_end, np.int64(tag & np.uint64(7)))
                if q < 0:
                    return -1, -1
        p = _skip(buf, p, end, np.int64(tag & np.uint64(7)))
        if p < 0:
            return -1, -1
    return nat, nev


@njit(cache=True, nogil=True)
def _walk(
    buf: Any, sp: Any, at: Any, ev: Any, ss: Any, keys: Any, key_offs: Any, count: bool
) -> tuple[int, int, int, int, int]:
    """The resource spans, scope spans, spans, attributes and events of a request: counted
    (``count``), or laid out in ``sp``, ``at``, ``ev`` and ``ss`` (sized by counting
    first); (-1, ...) when the layout is not one this walk reads."""
    n = buf.shape[0]
    i = 0
    nrs = 0
    nss = 0
    nsp = 0
    nat = 0
    nev = 0
    while i < n:
        tag, i = _varint(buf, i, n)
        if i < 0 or tag != np.uint64(10):  # resource_spans = 1, length-delimited
            return -1, 0, 0, 0, 0
        rs, rs_end = _len(buf, i, n)
        if rs < 0:
            return -1, 0, 0, 0, 0
        j = rs
        while j < rs_end:
            tag, j = _varint(buf, j, rs_end)
            if j < 0:
                return -1, 0, 0, 0, 0
            if tag == np.uint64(18):  # scope_spans = 2
                s, ss_end = _len(buf, j, rs_end)
                if s < 0:
                    return -1, 0, 0, 0, 0
                first = nsp
                k = s
                while k < ss_end:
                    tag, k = _varint(buf, k, ss_end)
                    if k < 0:
                        return -1, 0, 0, 0, 0
                    if tag == np.uint64(18):  # spans = 2
                        p, p_end = _len(buf, k, ss_end)
                        if p < 0:
                            return -1, 0, 0, 0, 0
                        if count:
                            dat, dev = _span_rows(buf, p, p_end)
                            if dat < 0:
                                return -1, 0, 0, 0, 0
                            nat += dat
                            nev += dev
                        else:
                            if nsp >= sp.shape[0]:
                                return -1, 0, 0, 0, 0
                            nat, nev = _span(
                                buf, p, p_end, sp, nsp, at, nat, ev, nev, keys, key_offs
                            )
                            if nat < 0:
                                return -1, 0, 0, 0, 0
                        nsp += 1
                        k = p_end
                    else:
                        k = _skip(buf, k, ss_end, np.int64(tag & np.uint64(7)))
                        if k < 0:
                            return -1, 0, 0, 0, 0
                if not count:
                    if nss >= ss.shape[0]:
                        return -1, 0, 0, 0, 0
                    ss[nss, 0] = nrs
                    ss[nss, 1] = first
                    ss[nss, 2] = nsp
                nss += 1
                j = ss_end
            else:
                j = _skip(buf, j, rs_end, np.int64(tag & np.uint64(7)))
                if j < 0:
                    return -1, 0, 0, 0, 0
        nrs += 1
        i = rs_end
    return nrs, nss, nsp, nat, nev


@njit(cache=True, nogil=True)
def _gather(buf: Any, offs: Any, lens: Any, out: Any, out_offs: Any) -> None:
    """Byte strings at ``offs``/``lens`` packed into ``out`` (Arrow string layout)."""
    p = 0
    for r in range(offs.shape[0]):
        out_offs[r] = p
        o = offs[r]
        for m in range(lens[r]):
            out[p + m] = buf[o + m]
        p += lens[r]
    out_offs[offs.shape[0]] = p


_HEXDIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)


@njit(cache=True, nogil=True)
def _hexes(buf: Any, offs: Any, nbytes: int, out: Any, out_offs: Any, digits: Any) -> None:
    """Lowercase hex of the ``nbytes`` bytes at each of ``offs`` (-1: the empty string)."""
    p = 0
    for r in range(offs.shape[0]):
        out_offs[r] = p
        o = offs[r]
        if o >= 0:
            for m in range(nbytes):
                b = buf[o + m]
                out[p] = digits[b >> 4]
                out[p + 1] = digits[b & 15]
                p += 2
    out_offs[offs.shape[0]] = p


@njit(cache=True, nogil=True, inline="always")
def _put(out: Any, p: int, b: int) -> int:
    out[p] = b
    return p + 1


_TRUE = np.frombuffer(b"true", np.uint8)
_FALSE = np.frombuffer(b"false", np.uint8)
_NULL = np.frombuffer(b"null", np.uint8)


@njit(cache=True, nogil=True, inline="always")
def _word(out: Any, p: int, word: Any) -> int:
    out[p : p + word.shape[0]] = word
    return p + word.shape[0]


@njit(cache=True, nogil=True)
def _json_string(buf: Any, off: int, ln: int, out: Any, p: int, digits: Any) -> int:
    """A JSON string as orjson writes it: quotes, backslashes and control characters
    escaped (\\b \\t \\n \\f \\r, else \\u00xx), everything else as it is."""
    p = _put(out, p, 34)
    for m in range(ln):
        b = buf[off + m]
        if b == 34 or b == 92:
            p = _put(out, p, 92)
            p = _put(out, p, b)
        elif b < 32:
            p = _put(out, p, 92)
            if b == 8:
                p = _put(out, p, 98)
            elif b == 9:
                p = _put(out, p, 116)
            elif b == 10:
                p = _put(out, p, 110)
            elif b == 12:
                p = _put(out, p, 102)
            elif b == 13:
                p = _put(out, p, 114)
            else:
                p = _put(out, p, 117)
                p = _put(out, p, 48)
                p = _put(out, p, 48)
                p = _put(out, p, digits[b >> 4])
                p = _put(out, p, digits[b & 15])
        else:
            p = _put(out, p, b)
    return _put(out, p, 34)


@njit(cache=True, nogil=True)
def _json_int(v: Any, out: Any, p: int) -> int:
    if v < 0:
        p = _put(out, p, 45)
        mag = np.uint64(-(v + 1)) + np.uint64(1)  # |INT64_MIN| does not fit in int64
    else:
        mag = np.uint64(v)
    nd = 1
    t = mag
    while t >= np.uint64(10):
        t //= np.uint64(10)
        nd += 1
    for k in range(nd - 1, -1, -1):
        out[p + k] = 48 + np.int64(mag % np.uint64(10))
        mag //= np.uint64(10)
    return p + nd


@njit(cache=True, nogil=True)
def _json(
    buf: Any, a0s: Any, ans: Any, skip: Any, at: Any, dbl: Any, dbl_offs: Any, dbl_of: Any,
    out: Any, out_offs: Any, digits: Any,
) -> int:  # fmt: skip
    """Each owner's attributes ``at[a0s[r] : a0s[r] + ans[r]]`` as the JSON object orjson
    writes for the same dict (an owner to ``skip``: the empty string), into ``out`` (large
    enough: see ``walk``); returns the bytes written."""
    p = 0
    for row in range(a0s.shape[0]):
        out_offs[row] = p
        if skip[row]:
            continue
        p = _put(out, p, 123)
        a0 = a0s[row]
        for a in range(a0, a0 + ans[row]):
            if a > a0:
                p = _put(out, p, 44)
            p = _json_string(buf, at[a, A_KOFF], at[a, A_KLEN], out, p, digits)
            p = _put(out, p, 58)
            t = at[a, A_TYPE]
            if t == T_STR:
                p = _json_string(buf, at[a, A_VOFF], at[a, A_VLEN], out, p, digits)
            elif t == T_INT:
                p = _json_int(at[a, A_INT], out, p)
            elif t == T_BOOL:
                p = _word(out, p, _TRUE if at[a, A_INT] else _FALSE)
            elif t == T_DBL:
                d = dbl_of[a]
                for m in range(dbl_offs[d], dbl_offs[d + 1]):
                    p = _put(out, p, dbl[m])
            else:
                p = _word(out, p, _NULL)
        p = _put(out, p, 125)
    out_offs[a0s.shape[0]] = p
    return p


_OWN = (c.GEN_AI_OPERATION_NAME, c.GEN_AI_AGENT_NAME)
_KEYS = (*_OWN, *sorted(CLASSIFY_KEYS - set(_OWN)))
_KEY_BYTES = np.frombuffer(b"".join(k.encode() for k in _KEYS), np.uint8)
_KEY_OFFS = np.cumsum([0] + [len(k.encode()) for k in _KEYS]).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Walked:
    """A request laid out, per span: its row's fields as Python values and, for the span
    table's wide columns, as Arrow arrays (``arrays``, by column name). Only plain spans'
    values mean anything; per scope, its span range."""

    scopes: list[tuple[int, int, int]]  # (resource index, first span, one past the last)
    plain: list[bool]
    trace_ids: list[str]
    span_ids: list[str]
    parent_ids: list[str]
    trace_states: list[str]
    flags: list[int]
    names: list[str]
    kinds: list[int]
    starts: list[int]
    ends: list[int]
    dropped_attributes: list[int]
    dropped_events: list[int]
    dropped_links: list[int]
    status_messages: list[str]
    codes: list[int]
    attributes: list[str]  # JSON
    ops: list[str | None]
    agents: list[str | None]
    arrays: dict[str, pa.Array]
    first_events: list[int]  # per span, its first row in ``events`` (and one past the end)
    events: list[tuple[Any, ...]]  # event rows, as Batch.events holds them


def _events(
    buf: Any, ev: Any, plain: Any, tids: list[str], sids: list[str], json: pa.Array
) -> list[tuple[Any, ...]]:
    """Each event's row (trace, span, seq, time, name, attributes JSON, dropped count)."""
    if not ev.shape[0]:
        return []
    spans = ev[:, E_SPAN]
    seq = np.arange(ev.shape[0]) - np.searchsorted(spans, spans)  # spans are in order
    shown = plain[spans].astype(np.int64)
    names = _packed(buf, ev[:, E_NAME_OFF], ev[:, E_NAME_LEN] * shown).to_pylist()
    owner = spans.tolist()
    return list(
        zip(
            [tids[k] for k in owner], [sids[k] for k in owner], seq.tolist(),
            ev[:, E_TIME].tolist(), names, json.to_pylist(), ev[:, E_DROPPED].tolist(),
            strict=True,
        )
    )  # fmt: skip


def _strings(data: Any, offs: Any) -> pa.Array:
    n = offs.shape[0] - 1
    if offs[-1] >= 1 << 31:
        return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offs), pa.py_buffer(data)).cast(
            pa.string()
        )
    return pa.StringArray.from_buffers(n, pa.py_buffer(offs.astype(np.int32)), pa.py_buffer(data))


def _packed(buf: Any, offs: Any, lens: Any) -> pa.Array:
    out = np.empty(int(lens.sum()), np.uint8)
    out_offs = np.empty(offs.shape[0] + 1, np.int64)
    _gather(buf, offs, lens, out, out_offs)
    return _strings(out, out_offs)


def _repack(data: Any, starts: Any, ends: Any) -> tuple[Any, Any]:
    out = np.empty(int((ends - starts).sum()), np.uint8)
    out_offs = np.empty(starts.shape[0] + 1, np.int64)
    _gather(data, starts.astype(np.int64), (ends - starts).astype(np.int64), out, out_offs)
    return out, out_offs


def _hex(buf: Any, offs: Any, nbytes: int) -> pa.Array:
    out = np.empty(int((offs >= 0).sum()) * nbytes * 2, np.uint8)
    out_offs = np.empty(offs.shape[0] + 1, np.int64)
    _hexes(buf, offs, nbytes, out, out_offs, _HEXDIGITS)
    return _strings(out, out_offs)


def walk(data: bytes | bytearray | memoryview) -> Walked | None:
    """``data`` (a request upb parsed) laid out, or None when its layout is not one the
    walk reads (or, given bytes upb would refuse, a string that is not UTF-8)."""
    try:
        return _walked(np.frombuffer(data, np.uint8))
    except UnicodeDecodeError:
        return None


def _walked(buf: Any) -> Walked | None:
    none = np.empty((0, 1), np.int64)
    counts = _walk(buf, none, none, none, none, _KEY_BYTES, _KEY_OFFS, True)
    nrs, nss, nsp, nat, nev = counts
    if nrs < 0:
        return None
    sp = np.empty((nsp, _NS), np.int64)
    at = np.empty((max(nat, 1), _NA), np.int64)
    ev = np.empty((nev, _NE), np.int64)
    ss = np.empty((nss, _NSS), np.int64)
    if _walk(buf, sp, at, ev, ss, _KEY_BYTES, _KEY_OFFS, False) != counts:
        return None
    plain = sp[:, S_SLOW] == 0
    # Doubles: formatted by orjson, all in one call: b"[a,b,c]", each text between commas.
    is_dbl = at[:nat, A_TYPE] == T_DBL
    dbl_vals = at[:nat, A_INT][is_dbl].view(np.float64)
    dbl_of = np.cumsum(is_dbl) - 1
    if dbl_vals.size:
        dbl_text = np.frombuffer(orjson.dumps(dbl_vals.tolist()), np.uint8)
        inner = np.ascontiguousarray(dbl_text[1:-1])
        commas = np.flatnonzero(inner == 44)
        starts = np.concatenate(([0], commas + 1))
        ends = np.concatenate((commas, [inner.size]))
        dbl_pack, dbl_pack_offs = _repack(inner, starts, ends)
    else:
        dbl_pack = np.empty(0, np.uint8)
        dbl_pack_offs = np.zeros(1, np.int64)
    # At most: every key and string byte escaped as \u00xx, 24 bytes of quotes,
    # separators and an integer per attribute, each double's text, and the braces.
    keys = at[:nat, A_KLEN] + at[:nat, A_VLEN] * (at[:nat, A_TYPE] == T_STR)
    out = np.empty(int(keys.sum()) * 6 + nat * 24 + dbl_pack.size + (nsp + nev) * 2, np.uint8)
    out_offs = np.empty(nsp + nev + 1, np.int64)
    # Spans first, then events (an event of a span that is not plain: no JSON either).
    owners_a0 = np.concatenate((sp[:, S_A0], ev[:, E_A0]))
    owners_an = np.concatenate((sp[:, S_AN], ev[:, E_AN]))
    skip = np.concatenate((~plain, ~plain[ev[:, E_SPAN]]))
    size = _json(
        buf, owners_a0, owners_an, skip, at, dbl_pack, dbl_pack_offs, dbl_of, out, out_offs,
        _HEXDIGITS,
    )  # fmt: skip
    json = _strings(out[:size], out_offs)
    shown = plain.astype(np.int64)  # a span that is not plain: empty strings, no ids
    arrays = {
        "trace_id": _hex(buf, np.where(plain, sp[:, S_TID], -1), 16),
        "span_id": _hex(buf, np.where(plain, sp[:, S_SID], -1), 8),
        "parent_span_id": _hex(buf, np.where(plain, sp[:, S_PID], -1), 8),
        "trace_state": _packed(buf, sp[:, S_TS_OFF], sp[:, S_TS_LEN] * shown),
        "flags": pa.array(sp[:, S_FLAGS].astype(np.uint32)),
        "name": _packed(buf, sp[:, S_NAME_OFF], sp[:, S_NAME_LEN] * shown),
        "start_ns": pa.array(sp[:, S_START]),
        "end_ns": pa.array(sp[:, S_END]),
        "status_message": _packed(buf, sp[:, S_MSG_OFF], sp[:, S_MSG_LEN] * shown),
        "attributes": json.slice(0, nsp),
        "dropped_attributes_count": pa.array(sp[:, S_DA].astype(np.uint32)),
        "dropped_events_count": pa.array(sp[:, S_DE].astype(np.uint32)),
        "dropped_links_count": pa.array(sp[:, S_DL].astype(np.uint32)),
    }
    text = {k: arrays[k].to_pylist() for k in (
        "trace_id", "span_id", "parent_span_id", "trace_state", "name", "status_message",
        "attributes",
    )}  # fmt: skip
    return Walked(
        scopes=[tuple(r) for r in ss.tolist()],  # type: ignore[misc]
        plain=plain.tolist(),
        trace_ids=text["trace_id"],
        span_ids=text["span_id"],
        parent_ids=text["parent_span_id"],
        trace_states=text["trace_state"],
        flags=sp[:, S_FLAGS].tolist(),
        names=text["name"],
        kinds=sp[:, S_KIND].tolist(),
        starts=sp[:, S_START].tolist(),
        ends=sp[:, S_END].tolist(),
        dropped_attributes=sp[:, S_DA].tolist(),
        dropped_events=sp[:, S_DE].tolist(),
        dropped_links=sp[:, S_DL].tolist(),
        status_messages=text["status_message"],
        codes=sp[:, S_CODE].tolist(),
        attributes=text["attributes"],
        ops=_values(buf, at, sp[:, S_OP], plain),
        agents=_values(buf, at, sp[:, S_AGENT], plain),
        arrays=arrays,
        first_events=[*sp[:, S_E0].tolist(), nev],
        events=_events(buf, ev, plain, text["trace_id"], text["span_id"], json.slice(nsp)),
    )


def _values(buf: Any, at: Any, attr_rows: Any, plain: Any) -> list[str | None]:
    """The string value of each span's attribute at ``attr_rows`` (-1: None)."""
    has = (attr_rows >= 0) & plain
    idx = np.where(has, attr_rows, 0)
    texts = _packed(buf, at[idx, A_VOFF], at[idx, A_VLEN] * has).to_pylist()
    return [t if h else None for t, h in zip(texts, has.tolist(), strict=True)]


def warm() -> None:
    """Compile the walk now (numba caches it on disk), not on the first large request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.parent_span_id = b"\1" * 16, b"\2" * 8, b"\3" * 8
    sp.name, sp.kind, sp.start_time_unix_nano, sp.end_time_unix_nano = "n", 1, 1, 2
    sp.status.code, sp.status.message = 2, "m"
    for key, value in (("s", "\n"), ("i", -1), ("b", True), ("d", 0.5)):
        kv = sp.attributes.add()
        kv.key = key
        setattr(kv.value, {str: "string_value", int: "int_value", bool: "bool_value",
                           float: "double_value"}[type(value)], value)  # fmt: skip
    walk(req.SerializeToString())
