"""Redaction on ingest: secrets are replaced before anything is written.

On by default for the obvious ones:

* values of attributes whose key names a credential (``...authorization``,
  ``...cookie``, ``set-cookie``, ``x-api-key``, ``api_key``, ``password``,
  ``client_secret``, ``access_token``, ``private_key``, ``token``, ``secret``,
  ``aws_secret_access_key``, ...), at any depth of a kvlist;
* API-key shapes anywhere in text: OpenAI/Anthropic ``sk-...``, Stripe
  ``sk_live_...``, GitHub ``ghp_...``/``github_pat_...``, Slack ``xox?-...``,
  AWS ``AKIA...``, Google ``AIza...``, Hugging Face ``hf_...``, JWTs, PEM
  private keys, the credentials after ``Bearer``/``Basic``, and
  ``Authorization:``/``Cookie:``/``api_key=``/``password=``/``token=`` pairs
  inside text, also with a prefix (``DATABASE_PASSWORD=``, ``OPENAI_API_KEY=``,
  ``AWS_SECRET_ACCESS_KEY=``), the password in a connection URL
  (``postgres://user:PASSWORD@host``), the value after a command-line flag
  naming a secret (``--token VALUE``, also as the next item of an array such as
  ``process.command_args``);
* bytes values that hold text are redacted like strings (and stay bytes).

Where: span names, status messages, span, event and link attributes, and
resource attributes. Not in state documents (``agentrace.state.snapshot`` and
``.patch``): each version's hash covers its content, and a redacted snapshot
would no longer verify; keep secrets out of state.

Cost: the ingest path hands whole Arrow columns to :meth:`Redactor.tables`,
which scans them with one RE2 expression (pyarrow's compute kernels: several
hundred MB/s, without the GIL). Only the rows it flags are decoded and walked in
Python with the precise expressions, so a batch without secrets pays one scan.
The scanning expression is a superset of the precise ones (it also matches
inside JSON escapes), so it never lets through what the walk would redact.

A :class:`Redactor` is immutable once built and safe to share between threads.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc

REPLACEMENT: Final = "[REDACTED]"

# Attributes whose content is covered by a state version's hash: never rewritten.
EXEMPT_KEYS: Final = frozenset({"agentrace.state.snapshot", "agentrace.state.patch"})

# The last segment of an attribute key (after '.', '_' or '-') that names a credential.
_KEY_WORDS: Final = (
    r"authorization|cookie|set-cookie|x-api-key|api[-_]?key|apikey|passw(?:or)?d|passphrase"
    r"|client[-_]secret|secret[-_]key|api[-_]secret|(?:access|refresh|id|auth|bearer|session)[-_]token"
    r"|private[-_]key|credentials?|token|secrets?|secret[-_]access[-_]key"
)
_KEY: Final = rf"(?i:(?:^|[._\-])(?:{_KEY_WORDS})$)"


@dataclass(frozen=True, slots=True)
class _Pattern:
    name: str
    precise: str  # Python syntax; a group named "secret" limits what is replaced
    scan: str  # RE2 syntax, a superset of ``precise`` on JSON-escaped text


_DEFAULT_PATTERNS: Final = (
    _Pattern(
        "openai-anthropic",
        r"\bsk-(?:proj-|ant-|live-|svcacct-)?[A-Za-z0-9_\-]{20,}",
        r"sk-[A-Za-z0-9_\-]{20,}",
    ),
    _Pattern(
        "stripe", r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}", r"k_(?:live|test)_[A-Za-z0-9]{16,}"
    ),
    _Pattern(
        "github",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
        r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_",
    ),
    _Pattern("slack", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", r"xox[abprs]-"),
    _Pattern("aws", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    _Pattern("google", r"\bAIza[0-9A-Za-z_\-]{35}", r"AIza[0-9A-Za-z_\-]{35}"),
    _Pattern("huggingface", r"\bhf_[A-Za-z0-9]{30,}", r"hf_[A-Za-z0-9]{30,}"),
    _Pattern(
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ",
    ),
    _Pattern(
        "private-key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
        r"PRIVATE KEY-----",
    ),
    _Pattern(
        "bearer",
        # A digit in the credential tells "Bearer abc123..." from "a basic understanding".
        r"(?i:\b(?:bearer|basic)\s+)(?P<secret>(?=[A-Za-z0-9._~+/\-]*\d)[A-Za-z0-9._~+/\-]{8,}=*)",
        r"(?i:bearer|basic)(?:\s|\\[tnr])+[A-Za-z0-9._~+/\-]{8,}",
    ),
    _Pattern(
        "header",
        r"(?i:\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?P<secret>[^\"'\n,}]+)"
        r"|(?i:\b(?:set-)?cookie[\"']?\s*[:=]\s*[\"']?)(?P<secret2>[^\"'\n]+)",
        r"(?i:authorization|cookie)",
    ),
    _Pattern(
        "key-value",
        # An optional prefix of words (DATABASE_, OPENAI_, AWS_) before the credential's name.
        r"(?i:\b(?:[A-Za-z0-9]+[-_])*(?:x-api-key|api[-_]?key|apikey|passw(?:or)?d|pwd|passphrase"
        r"|client[-_]secret|secret[-_](?:access[-_])?key|api[-_]secret|(?:access|refresh|auth)[-_]token"
        r"|token|secret)[\"']?\s*[:=]\s*[\"']?)(?P<secret>[^\"'\s,;&}]+)",
        # "token" only before its separator: "input_tokens" (in every LLM span) is not flagged.
        r"(?i:api[-_]?key|apikey|passw(?:or)?d|pwd|passphrase|secret"
        r"|token(?:\\?[\"'])?(?:\s|\\[tnr])*[:=])",
    ),
    _Pattern(
        "url-password",
        r"(?i:\b[a-z][a-z0-9+.\-]*://[^\s:/@\"']*:)(?P<secret>[^\s@/\"']+)(?=@)",
        r"://[^\s/@]*:[^\s@/]+@",
    ),
    _Pattern(
        "flag",
        r"(?i:(?:^|\s)--?(?:[a-z0-9]+[-_])*(?:token|secret|passw(?:or)?d|api[-_]?key|apikey"
        r"|access[-_]key|private[-_]key)\s+)(?P<secret>[^\s\-][^\s]*)",
        r"(?i:-[a-z0-9_\-]*(?:token|secret|passw|api[-_]?key|apikey|access[-_]key|private[-_]key))",
    ),
)

# A command-line flag naming a secret, as one item of an argument list: the next item is it.
_FLAG_ITEM: Final = re.compile(
    r"(?i:--?(?:[a-z0-9]+[-_])*(?:token|secret|passw(?:or)?d|api[-_]?key|apikey|access[-_]key"
    r"|private[-_]key))"
)


def _re2_ok(expr: str) -> bool:
    try:
        pc.match_substring_regex(pa.array([""]), expr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


class Redactor:
    """Replaces secrets in span data; ``Redactor()`` is the default set.

    ``patterns`` are extra regular expressions (Python syntax) whose matches are
    replaced; a group named ``secret`` limits the replacement to that group.
    ``keys`` are extra attribute keys (exact, case-insensitive) whose values are
    replaced whole. ``defaults=False`` drops the built-in set.
    """

    def __init__(
        self,
        patterns: Iterable[str] = (),
        keys: Iterable[str] = (),
        *,
        defaults: bool = True,
        replacement: str = REPLACEMENT,
    ) -> None:
        self.replacement = replacement
        pats = list(_DEFAULT_PATTERNS) if defaults else []
        for i, p in enumerate(patterns):
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(
                    f"redaction pattern {p!r} is not a valid regular expression: {exc}"
                ) from None
            # A user's pattern scans as itself; RE2 refuses look-arounds, and then every
            # row is checked in Python (correct, only slower).
            pats.append(_Pattern(f"custom-{i + 1}", p, p))
        self.patterns: tuple[str, ...] = tuple(p.precise for p in pats)
        self.keys: frozenset[str] = frozenset(k.lower() for k in keys)
        self._value_re = (
            re.compile("|".join(f"(?:{_renumber(p.precise, i)})" for i, p in enumerate(pats)))
            if pats
            else None
        )
        self._key_re = re.compile(_KEY) if defaults else None
        scans = [p.scan for p in pats]
        key_scans = [re.escape(k) for k in self.keys]
        if defaults:
            # A key named by these words ends where its quote does in the JSON text.
            key_scans.append(rf"(?i:(?:{_KEY_WORDS})\\?\")")
        if pats:
            # Secrets inside base64 are only seen decoded: rows with bytes are walked.
            key_scans.append("bytesValue")
        scan = "|".join(f"(?:{s})" for s in scans + key_scans)
        self._scan: str | None = scan or None
        self._scan_py = re.compile(scan) if scan else None
        # Without an RE2 form of the scan, every row goes through the Python walk.
        self._scan_re2 = scan if scan and _re2_ok(scan) else None
        self._key_memo: dict[str, bool] = {}

    @classmethod
    def default(cls) -> Redactor:
        """The shared default redactor (built once)."""
        return _default()

    @property
    def active(self) -> bool:
        return self._scan is not None

    # -- values ------------------------------------------------------------------------------

    def is_secret_key(self, key: str) -> bool:
        hit = self._key_memo.get(key)
        if hit is None:
            hit = key.lower() in self.keys or (
                self._key_re is not None and self._key_re.search(key) is not None
            )
            # Keys repeat from span to span; indexed ones (messages.37.content) do not.
            if len(self._key_memo) < 65_536:
                self._key_memo[key] = hit
        return hit

    def text(self, s: str) -> str:
        """``s`` with every secret-shaped part replaced."""
        if self._value_re is None or self._scan_py is None or not self._scan_py.search(s):
            return s
        return self._value_re.sub(self._replace, s)

    def _replace(self, m: re.Match[str]) -> str:
        for name, value in m.groupdict().items():
            if value is not None and name.startswith("secret"):
                start, end = m.span(name)
                whole = m.group(0)
                return whole[: start - m.start()] + self.replacement + whole[end - m.start() :]
        return self.replacement

    def value(self, v: Any) -> Any:
        """A JSON value with secrets replaced (strings, lists, kvlist objects, bytes holding text)."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, list):
            return self._items(v)
        if isinstance(v, dict):
            if len(v) == 1 and isinstance(v.get("bytesValue"), str):
                return self._bytes(v)
            return self.attributes(v)
        return v

    def _items(self, items: list[Any]) -> list[Any]:
        out = [self.value(x) for x in items]
        if self._key_re is not None:
            # ["app", "--token", "abc"]: the item after a flag naming a secret is the secret.
            for i in range(len(out) - 1):
                if isinstance(items[i], str) and _FLAG_ITEM.fullmatch(items[i]):
                    out[i + 1] = self._mask(out[i + 1])
        return out

    def _bytes(self, v: dict[str, Any]) -> dict[str, Any]:
        try:
            text = base64.b64decode(v["bytesValue"], validate=True).decode()
        except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
            return v  # not text: nothing a pattern could match
        redacted = self.text(text)
        if redacted == text:
            return v
        return {"bytesValue": base64.b64encode(redacted.encode()).decode("ascii")}

    def _mask(self, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, list):
            return [self._mask(x) for x in v]
        if isinstance(v, dict) and not (len(v) == 1 and ("bytesValue" in v or "doubleValue" in v)):
            return {k: self._mask(x) for k, x in v.items()}
        return self.replacement

    def attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Attributes (store form: plain JSON values) with secrets replaced; a new dict."""
        out: dict[str, Any] = {}
        for k, v in attrs.items():
            if k in EXEMPT_KEYS:
                out[k] = v
            elif self.is_secret_key(k):
                out[k] = self._mask(v)
            else:
                out[k] = self.value(v)
        return out

    def json_text(self, text: str) -> str:
        """The JSON text of an attribute object, redacted (the same text when nothing is)."""
        if self._scan_py is None or not self._scan_py.search(text):
            return text
        return _dumps(self.attributes(orjson.loads(text)))

    # -- whole batches -----------------------------------------------------------------------

    def tables(self, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """The ingest batch's tables with secrets replaced in their text columns.

        Called on the writer's thread; the scan runs in pyarrow without the GIL, over
        every text column of the batch at once (one scan costs about the same for a few
        rows as for thousands, so a small batch pays for one, not one per column).
        """
        if self._scan is None:
            return tables
        out = dict(tables)
        where: list[tuple[str, int, bool, pa.Array]] = []
        for name, columns in _TEXT_COLUMNS.items():
            table = out.get(name)
            if table is None:
                continue
            for col, is_json in columns:
                i = table.schema.get_field_index(col)
                column = table.column(i)
                arr = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
                where.append((name, i, is_json, arr))
        if not where:
            return out
        hits = self._hits([w[3] for w in where])
        for (name, i, is_json, arr), rows in zip(where, hits, strict=True):
            fixed = self._fix(arr, rows, is_json) if rows else None
            if fixed is not None:
                table = out[name]
                out[name] = table.set_column(i, table.schema.field(i), fixed)
        return out

    def _hits(self, arrays: list[pa.Array]) -> list[list[int]]:
        """For each array, the rows the scan matches."""
        if self._scan_re2 is not None:
            whole = pa.concat_arrays([a.cast(pa.string()) for a in arrays])
            mask = pc.match_substring_regex(whole, self._scan_re2)
            if not pc.any(mask).as_py():
                return [[] for _ in arrays]
            out: list[list[int]] = [[] for _ in arrays]
            bounds: list[int] = []
            total = 0
            for a in arrays:
                total += len(a)
                bounds.append(total)
            k = 0
            for row in pc.indices_nonzero(mask).to_pylist():
                while row >= bounds[k]:
                    k += 1
                out[k].append(row - (bounds[k] - len(arrays[k])))
            return out
        scan = self._scan_py
        assert scan is not None
        return [
            [i for i, s in enumerate(a.to_pylist()) if s is not None and scan.search(s)]
            for a in arrays
        ]

    def _fix(self, arr: pa.Array, rows: list[int], is_json: bool) -> pa.Array | None:
        values = arr.to_pylist()
        changed = False
        for i in rows:
            old = values[i]
            if old is None:
                continue
            new = self.json_text(old) if is_json else self.text(old)
            if new != old:
                values[i] = new
                changed = True
        return pa.array(values, type=arr.type) if changed else None


_TEXT_COLUMNS: Final = {
    "spans": (("name", False), ("status_message", False), ("attributes", True)),
    "span_events": (("attributes", True),),
    "span_links": (("attributes", True),),
}


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _renumber(expr: str, i: int) -> str:
    """Named groups made unique across patterns joined into one expression."""
    return re.sub(r"\(\?P<(secret\d*)>", lambda m: f"(?P<{m.group(1)}_{i}>", expr)


_DEFAULT: Redactor | None = None


def _default() -> Redactor:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Redactor()
    return _DEFAULT
