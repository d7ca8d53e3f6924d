"""The PromQL subset prometheus-adapter rules use, parsed and evaluated over the samples the engine keeps.

Semantics follow Prometheus 3 (``promql/engine.go``, ``promql/functions.go``): instant selectors look back
five minutes, ranges are left-open ``(at - range, at]``, ``rate``/``increase``/``delta`` use
``extrapolatedRate`` (without start timestamps), functions, arithmetic and aggregations drop ``__name__``,
label matcher regexes are fully anchored. Timestamps are kept in integer milliseconds like the TSDB so window
boundaries compare exactly. Anything outside the subset is a :class:`PromQLError` naming the construct.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

LOOKBACK_MS = 300_000  # engine.go's default lookback delta

__all__ = [
    "LOOKBACK_MS",
    "Aggregate",
    "Binary",
    "Call",
    "EvaluationError",
    "Expr",
    "Matcher",
    "MatrixSelector",
    "NumberLiteral",
    "Paren",
    "PromQLError",
    "Store",
    "StringLiteral",
    "Unary",
    "VectorMatching",
    "VectorSelector",
    "evaluate",
    "expand_template",
    "go_quote",
    "go_regex",
    "metric_names",
    "parse",
    "parse_selector",
    "select_series",
    "unquote",
]


class PromQLError(ValueError):
    """A query the simulator cannot parse or does not support; the message reads like Prometheus' own."""


class EvaluationError(PromQLError):
    """A query that parsed but failed while evaluating (Prometheus answers these with errorType execution)."""


# --------------------------------------------------------------------------------------------- regexes


@lru_cache(maxsize=4096)
def go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go (RE2) regex with Python's engine; the few syntax differences real configs hit are mapped."""
    translated = pattern.replace(r"\z", r"\Z")
    translated = re.sub(r"\(\?<(?![=!])", "(?P<", translated)
    # RE2's \d, \w, \s and \b are ASCII-only; Python's are Unicode unless told otherwise.
    return re.compile(translated, re.ASCII)


@lru_cache(maxsize=4096)
def _anchored(pattern: str) -> re.Pattern[str]:
    # Prometheus compiles matcher regexes as ^(?s:re)$ (model/labels/regexp.go).
    try:
        return go_regex("(?s:" + pattern + ")")
    except re.error as exc:
        raise PromQLError(f"error parsing regexp: {exc}: `{pattern}`") from exc


_LITERAL_ALTERNATIVE = re.compile(r"[A-Za-z0-9_\-:/@ ,=]*")


@lru_cache(maxsize=4096)
def _literal_set(pattern: str) -> frozenset[str] | None:
    # "a|b|c" of plain literals (what the adapter builds from object names) needs no regex at all.
    parts = pattern.split("|")
    if all(_LITERAL_ALTERNATIVE.fullmatch(p) for p in parts):
        return frozenset(parts)
    return None


def expand_template(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``$$``; a name takes every word character,
    so ``$1_total`` is the (empty) group ``1_total`` — why configs write ``${1}_total``."""
    out: list[str] = []
    rest = template
    while rest:
        before, sep, after = rest.partition("$")
        out.append(before)
        if not sep:
            return "".join(out)
        rest = after
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        name, after_name = _extract_group(rest)
        if name is None:
            out.append("$")
            continue
        rest = after_name
        value: str | None = None
        if name.isdigit() and not (name[0] == "0" and len(name) > 1) and len(name) <= 8:
            num = int(name)
            if num <= (match.re.groups):
                value = match.group(num)
        elif name in match.re.groupindex:
            value = match.group(name)
        out.append(value or "")
    return "".join(out)


def _extract_group(text: str) -> tuple[str | None, str]:
    brace = text.startswith("{")
    body = text[1:] if brace else text
    i = 0
    while i < len(body) and (body[i].isalnum() or body[i] == "_"):
        i += 1
    if i == 0:
        return None, text
    name = body[:i]
    if brace:
        if i >= len(body) or body[i] != "}":
            return None, text
        i += 1
    return name, body[i:]


# --------------------------------------------------------------------------------------------- store

LabelKey = tuple[tuple[str, str], ...]


# Prometheus' staleness marker is a NaN with a special payload; here one float object, told apart by identity.
_STALE = float("nan")


class _Series:
    __slots__ = ("key", "labels", "samples")

    def __init__(self, key: LabelKey) -> None:
        self.key = key
        self.labels: dict[str, str] = dict(key)
        self.samples: deque[tuple[int, float]] = deque()


class Store:
    """Recent samples per series: (name, labels) -> deque of (t, value), bounded by retention seconds.

    Times are kept as integer milliseconds (the TSDB's resolution). Series are indexed by metric name and,
    within a name, by (label, value) postings so a selector touches only the series it can match.
    :meth:`mark_stale` records Prometheus' staleness marker for a series that ended.
    """

    def __init__(self, retention: float = 600.0) -> None:
        self.retention_ms = round(retention * 1000)
        self._by_name: dict[str, dict[LabelKey, _Series]] = {}
        self._postings: dict[str, dict[tuple[str, str], set[LabelKey]]] = {}
        #: Raised whenever a series appears or goes: what is listed (the adapter's discovery) changes only then.
        self.generation = 0

    def add(self, name: str, labels: Mapping[str, str], t: float, value: float) -> None:
        """Append a sample; like the TSDB, empty label values are dropped and out-of-order samples ignored."""
        key: LabelKey = tuple(sorted((k, v) for k, v in labels.items() if v and k != "__name__"))
        series_of_name = self._by_name.get(name)
        if series_of_name is None:
            series_of_name = self._by_name[name] = {}
            self._postings[name] = {}
        series = series_of_name.get(key)
        if series is None:
            series = series_of_name[key] = _Series(key)
            self.generation += 1
            postings = self._postings[name]
            for pair in key:
                postings.setdefault(pair, set()).add(key)
        t_ms = round(t * 1000)
        samples = series.samples
        if samples and t_ms <= samples[-1][0]:
            return
        samples.append((t_ms, float(value)))
        horizon = t_ms - self.retention_ms
        while samples and samples[0][0] < horizon:
            samples.popleft()

    def mark_stale(self, name: str, labels: Mapping[str, str], t: float) -> None:
        """The series ended at ``t`` (its pod or target went away): like Prometheus' staleness marker, instant
        selectors stop returning it from then on instead of looking back five minutes; ranges keep its samples."""
        key: LabelKey = tuple(sorted((k, v) for k, v in labels.items() if v and k != "__name__"))
        series = self._by_name.get(name, {}).get(key)
        if series is None:
            return
        t_ms = round(t * 1000)
        if series.samples and t_ms > series.samples[-1][0]:
            series.samples.append((t_ms, _STALE))

    def prune(self, now: float) -> None:
        """Forget samples older than the retention, and series left without any."""
        horizon = round(now * 1000) - self.retention_ms
        for name in list(self._by_name):
            series_of_name = self._by_name[name]
            postings = self._postings[name]
            for key in list(series_of_name):
                samples = series_of_name[key].samples
                while samples and samples[0][0] < horizon:
                    samples.popleft()
                if not samples:
                    del series_of_name[key]
                    self.generation += 1
                    for pair in key:
                        keys = postings.get(pair)
                        if keys is not None:
                            keys.discard(key)
                            if not keys:
                                del postings[pair]
            if not series_of_name:
                del self._by_name[name]
                del self._postings[name]

    def series(self) -> Iterable[tuple[str, Mapping[str, str]]]:
        """Names and labels (without ``__name__``) of every series held, for the adapter's discovery."""
        for name, series_of_name in self._by_name.items():
            for s in series_of_name.values():
                yield name, s.labels

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())

    def _select(self, selector: VectorSelector) -> Iterator[tuple[str, _Series]]:
        name = selector.name
        names: Iterable[str]
        if name is not None:
            names = (name,) if name in self._by_name else ()
        else:
            name_matchers = [m for m in selector.matchers if m.name == "__name__"]
            names = [n for n in self._by_name if all(m.matches(n) for m in name_matchers)]
        label_matchers = [m for m in selector.matchers if m.name != "__name__"]
        for n in names:
            series_of_name = self._by_name[n]
            candidates = self._candidates(n, label_matchers)
            pool: Iterable[_Series] = (
                series_of_name.values() if candidates is None else (series_of_name[k] for k in candidates)
            )
            for s in pool:
                labels = s.labels
                if all(m.matches(labels.get(m.name, "")) for m in label_matchers):
                    yield n, s

    def _candidates(self, name: str, matchers: Sequence[Matcher]) -> set[LabelKey] | None:
        postings = self._postings[name]
        best: set[LabelKey] | None = None
        for m in matchers:
            values = m.literal_values()
            if values is None or "" in values:
                continue
            keys: set[LabelKey] = set()
            for v in values:
                keys |= postings.get((m.name, v), set())
            best = keys if best is None or len(keys) < len(best) else best
            if not best:
                break
        return best


# --------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            _anchored(self.value)

    def matches(self, v: str) -> bool:
        op = self.op
        if op == "=":
            return v == self.value
        if op == "!=":
            return v != self.value
        literal = _literal_set(self.value)
        hit = (v in literal) if literal is not None else _anchored(self.value).fullmatch(v) is not None
        return hit if op == "=~" else not hit

    def literal_values(self) -> frozenset[str] | None:
        """The exact values a positive matcher accepts, when it can be answered from postings."""
        if self.op == "=":
            return frozenset((self.value,))
        if self.op == "=~":
            return _literal_set(self.value)
        return None

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_go_quote(self.value)}"


class Expr:
    """A parsed PromQL expression; ``type`` is one of scalar, vector, matrix, string."""

    type: str = "vector"


@dataclass(frozen=True)
class NumberLiteral(Expr):
    value: float
    type: str = "scalar"


@dataclass(frozen=True)
class StringLiteral(Expr):
    value: str
    type: str = "string"


@dataclass(frozen=True)
class VectorSelector(Expr):
    name: str | None
    matchers: tuple[Matcher, ...]
    type: str = "vector"


@dataclass(frozen=True)
class MatrixSelector(Expr):
    selector: VectorSelector
    range_ms: int
    type: str = "matrix"


@dataclass(frozen=True)
class Call(Expr):
    func: str
    args: tuple[Expr, ...]
    type: str = "vector"


@dataclass(frozen=True)
class Aggregate(Expr):
    op: str
    expr: Expr
    grouping: tuple[str, ...] = ()
    without: bool = False
    type: str = "vector"
    param: Expr | None = None


@dataclass(frozen=True)
class VectorMatching:
    card: str = "one-to-one"  # many-to-one (group_left), one-to-many (group_right), many-to-many (set ops)
    labels: tuple[str, ...] = ()
    on: bool = False
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binary(Expr):
    op: str
    lhs: Expr
    rhs: Expr
    matching: VectorMatching | None = None
    return_bool: bool = False
    type: str = "vector"


@dataclass(frozen=True)
class Unary(Expr):
    op: str
    expr: Expr
    type: str = "vector"


@dataclass(frozen=True)
class Paren(Expr):
    expr: Expr
    type: str = "vector"


# --------------------------------------------------------------------------------------------- lexer

_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
                   "y": 31_536_000_000}
_DURATION_RE = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+(?![A-Za-z0-9_])")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_NUMBER_RE = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+(?:_[0-9]+)*\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("=~", "!~", "==", "!=", ">=", "<=", "+", "-", "*", "/", "%", "^", ">", "<", "=",
              "(", ")", "{", "}", "[", "]", ",", ":", "@")


@dataclass(frozen=True)
class _Token:
    kind: str  # number duration string ident op eof
    text: str
    pos: int
    value: object = None


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"{line}:{col}"


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "#":  # a comment runs to the end of the line
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in "\"'`":
            value, end = _lex_string(text, i)
            tokens.append(_Token("string", text[i:end], i, value))
            i = end
            continue
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _DURATION_RE.match(text, i)
            if m:
                ms = sum(int(a) * _DURATION_UNITS[u] for a, u in _DURATION_PART.findall(m.group()))
                tokens.append(_Token("duration", m.group(), i, ms))
                i = m.end()
                continue
            m = _NUMBER_RE.match(text, i)
            assert m is not None
            literal = m.group()
            digits = literal.replace("_", "")
            number = float(int(digits, 16)) if digits[:2].lower() == "0x" else float(digits)
            tokens.append(_Token("number", literal, i, number))
            i = m.end()
            continue
        m = _IDENT_RE.match(text, i)
        if m and not (c == ":" and tokens and tokens[-1].kind == "duration"):  # [5m:1m] is a subquery's step
            tokens.append(_Token("ident", m.group(), i))
            i = m.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(_Token("op", op, i))
                i += len(op)
                break
        else:
            raise PromQLError(f"{_position(text, i)}: parse error: unexpected character: {c!r}")
    tokens.append(_Token("eof", "", n))
    return tokens


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _lex_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    i = start + 1
    out: list[str] = []
    while True:
        if i >= len(text):
            raise PromQLError(f"{_position(text, start)}: parse error: unterminated quoted string")
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\" and quote != "`":
            i += 1
            if i >= len(text):
                raise PromQLError(f"{_position(text, start)}: parse error: unterminated quoted string")
            e = text[i]
            if e in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[e])
                i += 1
            elif e == quote:
                out.append(e)
                i += 1
            elif e in "xuU" or e.isdigit():
                width, base = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}.get(e, (3, 8))
                digits_start = i if e.isdigit() else i + 1
                digits = text[digits_start:digits_start + width]
                try:
                    out.append(chr(int(digits, base)) if len(digits) == width else "")
                except ValueError:
                    digits = ""
                if len(digits) != width:
                    raise PromQLError(f"{_position(text, start)}: parse error: invalid escape sequence in string")
                i = digits_start + width
            else:
                raise PromQLError(f"{_position(text, start)}: parse error: unknown escape sequence {e!r}")
            continue
        out.append(c)
        i += 1


def unquote(text: str) -> str:
    """A quoted PromQL (Go) string literal's value: ``"..."`` and ``'...'`` with escapes, or a raw `` `...` ``."""
    if len(text) < 2 or text[0] not in "\"'`" or text[-1] != text[0]:
        raise PromQLError(f"1:1: parse error: not a quoted string: {text}")
    value, end = _lex_string(text, 0)
    if end != len(text):
        raise PromQLError(f"1:{end + 1}: parse error: unexpected characters after the string")
    return value


def _go_quote(s: str) -> str:
    """Go's ``%q`` (strconv.Quote), which the adapter uses for label matcher values."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[ch])
        elif ch.isprintable() or (ch == " "):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


go_quote = _go_quote

# --------------------------------------------------------------------------------------------- parser

_SUPPORTED_FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "rate": (("matrix",), "vector"),
    "irate": (("matrix",), "vector"),
    "increase": (("matrix",), "vector"),
    "delta": (("matrix",), "vector"),
    "idelta": (("matrix",), "vector"),
    "avg_over_time": (("matrix",), "vector"),
    "max_over_time": (("matrix",), "vector"),
    "min_over_time": (("matrix",), "vector"),
    "sum_over_time": (("matrix",), "vector"),
    "count_over_time": (("matrix",), "vector"),
    "last_over_time": (("matrix",), "vector"),
    "label_replace": (("vector", "string", "string", "string", "string"), "vector"),
    "abs": (("vector",), "vector"),
    "clamp_min": (("vector", "scalar"), "vector"),
    "clamp_max": (("vector", "scalar"), "vector"),
    "clamp": (("vector", "scalar", "scalar"), "vector"),
    "scalar": (("vector",), "scalar"),
    "vector": (("scalar",), "vector"),
    "time": ((), "scalar"),
}

_PROMETHEUS_FUNCTIONS = frozenset(
    "abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max "
    "clamp_min cos cosh count_over_time days_in_month day_of_month day_of_week day_of_year deg delta deriv "
    "double_exponential_smoothing exp first_over_time floor histogram_avg histogram_count histogram_fraction "
    "histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase info "
    "irate label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute "
    "month pi predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort "
    "sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time "
    "timestamp vector year".split()
)

_SUPPORTED_AGGREGATIONS = frozenset(("sum", "avg", "max", "min", "count", "group", "topk", "bottomk"))
#: Aggregations with a parameter before the vector (``topk(1, x)``).
_PARAMETERISED = frozenset(("topk", "bottomk"))
_AGGREGATIONS = _SUPPORTED_AGGREGATIONS | frozenset(
    ("stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"))

_PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3,
               "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
_COMPARISONS = frozenset(("==", "!=", "<=", "<", ">=", ">"))
_SET_OPS = frozenset(("and", "or", "unless"))
_KEYWORDS = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                       "and", "or", "unless", "atan2"))


def _describe(tok: _Token) -> str:
    if tok.kind == "eof":
        return "end of input"
    if tok.kind == "string":
        return f"string {tok.text}"
    if tok.kind in ("number", "duration"):
        return f'{tok.kind} "{tok.text}"'
    if tok.kind == "ident":
        return f'identifier "{tok.text}"' if tok.text not in _KEYWORDS else f'keyword "{tok.text}"'
    return f'"{tok.text}"'


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.i = 0

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def error(self, tok: _Token, message: str) -> PromQLError:
        return PromQLError(f"{_position(self.text, tok.pos)}: parse error: {message}")

    def unexpected(self, tok: _Token, context: str, expected: str | None = None) -> PromQLError:
        msg = f"unexpected {_describe(tok)}"
        if context:
            msg += f" in {context}"
        if expected:
            msg += f", expected {expected}"
        return self.error(tok, msg)

    def expect_op(self, op: str, context: str) -> _Token:
        tok = self.next()
        if tok.kind != "op" or tok.text != op:
            raise self.unexpected(tok, context, f'\"{op}\"')
        return tok

    def parse(self) -> Expr:
        if self.peek().kind == "eof":
            raise self.error(self.peek(), "no expression found in input")
        expr = self.expr(0)
        tok = self.peek()
        if tok.kind != "eof":
            raise self.unexpected(tok, "", None)
        return expr

    # binary operators, by precedence climbing
    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok.kind == "op" and tok.text in _PRECEDENCE:
            return tok.text
        if tok.kind == "ident" and tok.text in ("and", "or", "unless", "atan2"):
            return tok.text
        return None

    def expr(self, min_prec: int) -> Expr:
        lhs = self.unary()
        while True:
            op = self.binary_op()
            if op is None:
                return lhs
            prec = _PRECEDENCE[op]
            if prec < min_prec:
                return lhs
            op_tok = self.next()
            if op == "atan2":
                raise self.error(op_tok, f"unsupported operator \"{op}\" (outside the simulator's PromQL subset)")
            return_bool = False
            if self.peek().kind == "ident" and self.peek().text == "bool":
                if op not in _COMPARISONS:
                    raise self.error(self.peek(), "bool modifier can only be used on comparison operators")
                self.next()
                return_bool = True
            matching = self.vector_matching(op)
            rhs = self.expr(prec if op == "^" else prec + 1)
            lhs = self.make_binary(op_tok, op, lhs, rhs, matching, return_bool)

    def vector_matching(self, op: str) -> VectorMatching | None:
        tok = self.peek()
        card = "many-to-many" if op in _SET_OPS else "one-to-one"
        if not (tok.kind == "ident" and tok.text in ("on", "ignoring")):
            if tok.kind == "ident" and tok.text in ("group_left", "group_right"):
                raise self.unexpected(tok, "binary expression", '"on" or "ignoring" before it')
            return None
        self.next()
        on = tok.text == "on"
        labels = self.label_list("grouping opts")
        include: tuple[str, ...] = ()
        g = self.peek()
        if g.kind == "ident" and g.text in ("group_left", "group_right"):
            if op in _SET_OPS:
                raise self.error(g, f"no grouping allowed for \"{op}\" operation")
            self.next()
            card = "many-to-one" if g.text == "group_left" else "one-to-many"
            if self.peek().kind == "op" and self.peek().text == "(":
                include = self.label_list("grouping opts")
            for label in include:
                if on and label in labels:
                    raise self.error(g, f"label \"{label}\" must not occur in ON and GROUP clause at once")
        return VectorMatching(card=card, labels=labels, on=on, include=include)

    def make_binary(self, tok: _Token, op: str, lhs: Expr, rhs: Expr, matching: VectorMatching | None,
                    return_bool: bool) -> Expr:
        for side in (lhs, rhs):
            if side.type not in ("scalar", "vector"):
                raise self.error(tok, "binary expression must contain only scalar and instant vector types")
        both_vectors = lhs.type == "vector" and rhs.type == "vector"
        if matching is not None and not both_vectors:
            raise self.error(tok, "vector matching only allowed between instant vectors")
        if op in _SET_OPS and not both_vectors:
            raise self.error(tok, f"set operator \"{op}\" not allowed in binary scalar expression")
        if op in _COMPARISONS and lhs.type == "scalar" and rhs.type == "scalar" and not return_bool:
            raise self.error(tok, "comparisons between scalars must use BOOL modifier")
        if both_vectors and matching is None:
            matching = VectorMatching(card="many-to-many" if op in _SET_OPS else "one-to-one")
        kind = "vector" if (lhs.type == "vector" or rhs.type == "vector") else "scalar"
        return Binary(op=op, lhs=lhs, rhs=rhs, matching=matching, return_bool=return_bool, type=kind)

    def unary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("+", "-"):
            self.next()
            operand = self.expr(_PRECEDENCE["^"])
            if operand.type not in ("scalar", "vector"):
                raise self.error(tok, "unary expression only allowed on expressions of type scalar or instant vector")
            if tok.text == "+":
                return operand
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value)
            return Unary("-", operand, type=operand.type)
        return self.postfix(self.primary())

    def postfix(self, expr: Expr) -> Expr:
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text == "[":
                self.next()
                rng = self.next()
                if rng.kind == "number" and isinstance(rng.value, float) and rng.value.is_integer():
                    rng = _Token("duration", rng.text, rng.pos, int(rng.value) * 1000)  # [5] means 5 s
                if rng.kind != "duration":
                    raise self.unexpected(rng, "range", "duration")
                close = self.next()
                if close.kind == "op" and close.text == ":":
                    raise self.error(close, "unsupported subquery (outside the simulator's PromQL subset)")
                if close.kind != "op" or close.text != "]":
                    raise self.unexpected(close, "range", '"]"')
                if not isinstance(expr, VectorSelector):
                    raise self.error(tok, "ranges only allowed for vector selectors")
                assert isinstance(rng.value, int)
                if rng.value <= 0:
                    raise self.error(rng, "range must be positive")
                expr = MatrixSelector(expr, rng.value)
                continue
            if tok.kind == "ident" and tok.text == "offset":
                raise self.error(tok, "unsupported offset modifier (outside the simulator's PromQL subset)")
            if tok.kind == "op" and tok.text == "@":
                raise self.error(tok, "unsupported @ modifier (outside the simulator's PromQL subset)")
            return expr

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "number":
            self.next()
            assert isinstance(tok.value, float)
            return NumberLiteral(tok.value)
        if tok.kind == "duration":
            raise self.unexpected(tok, "", "an expression (durations only go in a range [..])")
        if tok.kind == "string":
            self.next()
            assert isinstance(tok.value, str)
            return StringLiteral(tok.value)
        if tok.kind == "op" and tok.text == "(":
            self.next()
            inner = self.expr(0)
            self.expect_op(")", "parenthesized expression")
            return Paren(inner, type=inner.type)
        if tok.kind == "op" and tok.text == "{":
            return self.selector(None, tok)
        if tok.kind == "ident":
            word = tok.text
            after = self.peek(1)
            opens = after.kind == "op" and after.text == "("
            if word in _AGGREGATIONS and (opens or (after.kind == "ident" and after.text in ("by", "without"))):
                return self.aggregation()
            if after.kind == "op" and after.text == "(":
                return self.call()
            if word.lower() in ("inf", "nan") and not (after.kind == "op" and after.text == "{"):
                self.next()
                return NumberLiteral(math.inf if word.lower() == "inf" else math.nan)
            if word in _KEYWORDS:
                raise self.unexpected(tok, "", "an expression")
            self.next()
            return self.selector(word, tok)
        raise self.unexpected(tok, "", "an expression")

    def label_list(self, context: str) -> tuple[str, ...]:
        self.expect_op("(", context)
        labels: list[str] = []
        while True:
            tok = self.next()
            if tok.kind == "op" and tok.text == ")":
                return tuple(labels)
            if tok.kind != "ident" or not _LABEL_NAME_RE.fullmatch(tok.text):
                raise self.unexpected(tok, context, "label")
            labels.append(tok.text)
            sep = self.next()
            if sep.kind == "op" and sep.text == ")":
                return tuple(labels)
            if not (sep.kind == "op" and sep.text == ","):
                raise self.unexpected(sep, context, '"," or ")"')

    def aggregation(self) -> Expr:
        op_tok = self.next()
        op = op_tok.text
        if op not in _SUPPORTED_AGGREGATIONS:
            raise self.error(op_tok, f"unsupported aggregation \"{op}\" (outside the simulator's PromQL subset)")
        grouping: tuple[str, ...] = ()
        without = False
        modifier_seen = False
        tok = self.peek()
        if tok.kind == "ident" and tok.text in ("by", "without"):
            self.next()
            without = tok.text == "without"
            grouping = self.label_list("grouping opts")
            modifier_seen = True
        self.expect_op("(", "aggregation")
        if self.peek().kind == "op" and self.peek().text == ")":
            raise self.error(op_tok, "no arguments for aggregate expression provided")
        param: Expr | None = None
        if op in _PARAMETERISED:
            param = self.expr(0)
            if param.type != "scalar":
                raise self.error(op_tok, f"expected type scalar in aggregation parameter, got {_type_name(param)}")
            self.expect_op(",", "aggregation")
        arg = self.expr(0)
        tok = self.next()
        if tok.kind == "op" and tok.text == ",":
            raise self.error(op_tok, "wrong number of arguments for aggregate expression provided, expected 1, got 2")
        if not (tok.kind == "op" and tok.text == ")"):
            raise self.unexpected(tok, "aggregation", '")"')
        tok = self.peek()
        if tok.kind == "ident" and tok.text in ("by", "without"):
            if modifier_seen:
                raise self.unexpected(tok, "aggregation")
            self.next()
            without = tok.text == "without"
            grouping = self.label_list("grouping opts")
        if arg.type != "vector":
            raise self.error(op_tok, f"expected type instant vector in aggregation expression, got {_type_name(arg)}")
        return Aggregate(op=op, expr=arg, grouping=grouping, without=without, param=param)

    def call(self) -> Expr:
        name_tok = self.next()
        name = name_tok.text
        if name not in _SUPPORTED_FUNCTIONS:
            if name in _PROMETHEUS_FUNCTIONS:
                raise self.error(name_tok, f"unsupported function \"{name}\" (outside the simulator's PromQL subset)")
            raise self.error(name_tok, f"unknown function with name \"{name}\"")
        self.expect_op("(", "function call")
        args: list[Expr] = []
        starts: list[_Token] = []
        if self.peek().kind == "op" and self.peek().text == ")":
            self.next()
        else:
            while True:
                starts.append(self.peek())
                args.append(self.expr(0))
                tok = self.next()
                if tok.kind == "op" and tok.text == ")":
                    break
                if not (tok.kind == "op" and tok.text == ","):
                    raise self.unexpected(tok, "function call", '"," or ")"')
        arg_types, result = _SUPPORTED_FUNCTIONS[name]
        if len(args) != len(arg_types):
            raise self.error(name_tok, f"expected {len(arg_types)} argument(s) in call to \"{name}\", got {len(args)}")
        for arg, want, start in zip(args, arg_types, starts, strict=True):
            if arg.type != want:
                want_name, got = _TYPE_NAMES[want], _type_name(arg)
                raise self.error(start, f"expected type {want_name} in call to function \"{name}\", got {got}")
        return Call(func=name, args=tuple(args), type=result)

    def selector(self, name: str | None, start: _Token) -> VectorSelector:
        matchers: list[Matcher] = []
        tok = self.peek()
        if tok.kind == "op" and tok.text == "{":
            self.next()
            while True:
                tok = self.next()
                if tok.kind == "op" and tok.text == "}":
                    break
                if tok.kind != "ident" or not _LABEL_NAME_RE.fullmatch(tok.text):
                    raise self.unexpected(tok, "label matching", "label matching operator" if tok.kind == "op"
                                          else "identifier or \"}\"")
                op = self.next()
                if op.kind != "op" or op.text not in ("=", "!=", "=~", "!~"):
                    raise self.unexpected(op, "label matching", "label matching operator")
                value = self.next()
                if value.kind != "string":
                    raise self.unexpected(value, "label matching", "string")
                assert isinstance(value.value, str)
                try:
                    matchers.append(Matcher(tok.text, op.text, value.value))
                except PromQLError as exc:
                    raise self.error(value, str(exc)) from exc
                sep = self.next()
                if sep.kind == "op" and sep.text == "}":
                    break
                if not (sep.kind == "op" and sep.text == ","):
                    raise self.unexpected(sep, "label matching", '"," or "}"')
        if name is not None:
            if any(m.name == "__name__" for m in matchers):
                raise self.error(start, "metric name must not be set twice")
        elif not any(not m.matches("") for m in matchers):
            raise self.error(start, "vector selector must contain at least one non-empty matcher")
        if name is None:
            fixed = [m.value for m in matchers if m.name == "__name__" and m.op == "="]
            if len(fixed) == 1 and len([m for m in matchers if m.name == "__name__"]) == 1:
                name = fixed[0]
                matchers = [m for m in matchers if m.name != "__name__"]
        return VectorSelector(name=name, matchers=tuple(matchers))


_TYPE_NAMES = {"scalar": "scalar", "vector": "instant vector", "matrix": "range vector", "string": "string"}


def _type_name(e: Expr) -> str:
    return _TYPE_NAMES[e.type]


@lru_cache(maxsize=2048)
def _parse_cached(text: str) -> Expr:
    return _Parser(text).parse()


def parse(text: str) -> Expr:
    """Parse a PromQL expression of the supported subset; errors name the position like Prometheus'."""
    return _parse_cached(text)


def parse_selector(text: str) -> VectorSelector:
    """A series selector as ``/api/v1/series`` takes it (the adapter's ``seriesQuery``)."""
    expr = parse(text)
    if not isinstance(expr, VectorSelector):
        raise PromQLError(f"1:1: parse error: expected type instant vector selector, got {_type_name(expr)} "
                          f"expression {text!r}")
    return expr


def select_series(store: Store, selector: str | VectorSelector) -> list[tuple[str, Mapping[str, str]]]:
    """The series a selector matches (name and labels), as Prometheus' series endpoint lists them."""
    vs = parse_selector(selector) if isinstance(selector, str) else selector
    return [(name, s.labels) for name, s in store._select(vs)]


def metric_names(expr: Expr | str) -> set[str] | None:
    """Metric names the query selects; None if a selector has no fixed name (``{__name__=~"..."}``)."""
    root = parse(expr) if isinstance(expr, str) else expr
    names: set[str] = set()
    for node in _walk(root):
        if isinstance(node, VectorSelector):
            if node.name is None:
                return None
            names.add(node.name)
    return names


def _walk(node: Expr) -> Iterator[Expr]:
    yield node
    children: tuple[Expr, ...] = ()
    if isinstance(node, MatrixSelector):
        children = (node.selector,)
    elif isinstance(node, Call):
        children = node.args
    elif isinstance(node, (Aggregate, Paren, Unary)):
        children = (node.expr,)
    elif isinstance(node, Binary):
        children = (node.lhs, node.rhs)
    for child in children:
        yield from _walk(child)


# --------------------------------------------------------------------------------------------- evaluation

Labels = dict[str, str]
Vector = list[tuple[Labels, float]]
Matrix = list[tuple[Labels, list[tuple[int, float]]]]
_Value = float | Vector | Matrix | str


def evaluate(expr: Expr | str, store: Store, at: float) -> list[tuple[dict[str, str], float]]:
    """Evaluate an instant query at ``at`` (seconds); a scalar result comes back as ``[({}, v)]``."""
    root = parse(expr) if isinstance(expr, str) else expr
    if root.type == "string":
        raise PromQLError("string results are not supported (outside the simulator's PromQL subset)")
    if root.type == "matrix":
        raise PromQLError("range vector results are not supported by instant evaluation here")
    result = _Evaluator(store, round(at * 1000)).eval(root)
    if isinstance(result, float):
        return [({}, result)]
    assert isinstance(result, list)
    vector: Vector = result  # type: ignore[assignment]
    return sorted(vector, key=lambda s: sorted(s[0].items()))


def _drop_name(labels: Labels) -> Labels:
    if "__name__" in labels:
        labels = dict(labels)
        del labels["__name__"]
    return labels


def _check_unique(vector: Vector) -> Vector:
    seen: set[LabelKey] = set()
    for labels, _ in vector:
        key = tuple(sorted(labels.items()))
        if key in seen:
            raise EvaluationError("vector cannot contain metrics with the same labelset")
        seen.add(key)
    return vector


def _fsum(values: Sequence[float]) -> float:
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        return sum(values)


def _arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            if a == 0 or math.isnan(a):
                return math.nan
            return math.copysign(math.inf, a) * math.copysign(1.0, b)
        return a / b
    if op == "%":
        if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
            return math.nan
        return math.fmod(a, b)
    if op == "^":
        try:
            return math.pow(a, b)
        except OverflowError:
            return math.inf
        except ValueError:
            return math.nan
    raise EvaluationError(f"operator \"{op}\" not allowed for scalar/vector operations")


def _compare(op: str, a: float, b: float) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _binop(op: str, a: float, b: float) -> tuple[float, bool]:
    """vectorElemBinop: the value and whether a comparison keeps the element."""
    if op in _COMPARISONS:
        return a, _compare(op, a, b)
    return _arith(op, a, b), True


def _extrapolated_rate(points: Sequence[tuple[int, float]], range_ms: int, at_ms: int,
                       is_counter: bool, is_rate: bool) -> float | None:
    """functions.go extrapolatedRate for float samples without start timestamps."""
    if len(points) < 2:
        return None
    range_start = at_ms - range_ms
    range_end = at_ms
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    result = last_v - first_v
    if is_counter:
        prev = first_v
        for _, v in points[1:]:
            if v < prev:
                result += prev
            prev = v
    duration_to_start = (first_t - range_start) / 1000
    duration_to_end = (range_end - last_t) / 1000
    sampled_interval = (last_t - first_t) / 1000
    average_between = sampled_interval / (len(points) - 1)
    threshold = average_between * 1.1
    if duration_to_start >= threshold:
        duration_to_start = average_between / 2
    if is_counter:
        # A counter cannot go below zero: extrapolate no further back than where it would have been zero.
        duration_to_zero = duration_to_start
        if result > 0 and first_v >= 0:
            duration_to_zero = sampled_interval * (first_v / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    if duration_to_end >= threshold:
        duration_to_end = average_between / 2
    factor = 1.0
    if sampled_interval != 0:
        factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval
    if is_rate:
        factor /= range_ms / 1000
    return result * factor


def _instant_value(points: Sequence[tuple[int, float]], is_rate: bool) -> float | None:
    """functions.go instantValue (irate/idelta) from the last two samples."""
    if len(points) < 2:
        return None
    (t0, v0), (t1, v1) = points[-2], points[-1]
    interval = t1 - t0
    if interval == 0:
        return None
    result = v1
    if not is_rate or not v1 < v0:
        result = v1 - v0
    if is_rate:
        result /= interval / 1000
    return result


def _max_over(values: Sequence[float]) -> float:
    best = values[0]
    for v in values[1:]:
        if v > best or math.isnan(best):
            best = v
    return best


def _min_over(values: Sequence[float]) -> float:
    best = values[0]
    for v in values[1:]:
        if v < best or math.isnan(best):
            best = v
    return best


_RANGE_FUNCTIONS: dict[str, Callable[[Sequence[tuple[int, float]], int, int], float | None]] = {
    "rate": lambda p, r, t: _extrapolated_rate(p, r, t, True, True),
    "increase": lambda p, r, t: _extrapolated_rate(p, r, t, True, False),
    "delta": lambda p, r, t: _extrapolated_rate(p, r, t, False, False),
    "irate": lambda p, r, t: _instant_value(p, True),
    "idelta": lambda p, r, t: _instant_value(p, False),
    "avg_over_time": lambda p, r, t: _fsum([v for _, v in p]) / len(p) if p else None,
    "sum_over_time": lambda p, r, t: _fsum([v for _, v in p]) if p else None,
    "max_over_time": lambda p, r, t: _max_over([v for _, v in p]) if p else None,
    "min_over_time": lambda p, r, t: _min_over([v for _, v in p]) if p else None,
    "count_over_time": lambda p, r, t: float(len(p)) if p else None,
    "last_over_time": lambda p, r, t: p[-1][1] if p else None,
}


def _go_max(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _go_min(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return min(a, b)


class _Evaluator:
    def __init__(self, store: Store, at_ms: int) -> None:
        self.store = store
        self.at_ms = at_ms

    def eval(self, node: Expr) -> _Value:
        if isinstance(node, NumberLiteral):
            return node.value
        if isinstance(node, StringLiteral):
            return node.value
        if isinstance(node, Paren):
            return self.eval(node.expr)
        if isinstance(node, VectorSelector):
            return self.instant(node)
        if isinstance(node, MatrixSelector):
            return self.range(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Aggregate):
            return self.aggregate(node)
        if isinstance(node, Unary):
            value = self.eval(node.expr)
            if isinstance(value, float):
                return -value
            return [(_drop_name(labels), -v) for labels, v in self.vector(value)]
        if isinstance(node, Binary):
            return self.binary(node)
        raise PromQLError(f"unsupported expression {node!r}")

    @staticmethod
    def vector(value: _Value) -> Vector:
        assert isinstance(value, list)
        return value  # type: ignore[return-value]

    def scalar(self, node: Expr) -> float:
        value = self.eval(node)
        assert isinstance(value, float)
        return value

    def instant(self, vs: VectorSelector) -> Vector:
        at = self.at_ms
        floor = at - LOOKBACK_MS
        out: Vector = []
        for name, s in self.store._select(vs):
            for t, v in reversed(s.samples):
                if t <= at:
                    if t > floor and v is not _STALE:
                        labels = dict(s.labels)
                        labels["__name__"] = name
                        out.append((labels, v))
                    break
        return out

    def range(self, ms: MatrixSelector, keep_name: bool = True) -> Matrix:
        at = self.at_ms
        start = at - ms.range_ms
        out: Matrix = []
        for name, s in self.store._select(ms.selector):
            points: list[tuple[int, float]] = []
            for sample in reversed(s.samples):
                t = sample[0]
                if t <= start:
                    break
                if t <= at and sample[1] is not _STALE:
                    points.append(sample)
            if points:
                points.reverse()
                labels = dict(s.labels)
                if keep_name:
                    labels["__name__"] = name
                out.append((labels, points))
        return out

    def call(self, node: Call) -> _Value:
        f = node.func
        if f in _RANGE_FUNCTIONS:
            arg = node.args[0]
            assert isinstance(arg, MatrixSelector)
            fn = _RANGE_FUNCTIONS[f]
            keep_name = f == "last_over_time"
            out: Vector = []
            for labels, points in self.range(arg, keep_name):
                value = fn(points, arg.range_ms, self.at_ms)
                if value is not None:
                    out.append((labels, value))
            # One metric name: label sets are distinct by construction (the store keys series by them).
            return out if keep_name or arg.selector.name is not None else _check_unique(out)
        if f == "time":
            return self.at_ms / 1000
        if f == "vector":
            single: Vector = [({}, self.scalar(node.args[0]))]
            return single
        if f == "scalar":
            values = self.vector(self.eval(node.args[0]))
            return values[0][1] if len(values) == 1 else math.nan
        vec = self.vector(self.eval(node.args[0]))
        if f == "abs":
            return _check_unique([(_drop_name(lb), abs(v)) for lb, v in vec])
        if f == "clamp_min":
            lo = self.scalar(node.args[1])
            return _check_unique([(_drop_name(lb), _go_max(lo, v)) for lb, v in vec])
        if f == "clamp_max":
            hi = self.scalar(node.args[1])
            return _check_unique([(_drop_name(lb), _go_min(hi, v)) for lb, v in vec])
        if f == "clamp":
            lo, hi = self.scalar(node.args[1]), self.scalar(node.args[2])
            if hi < lo:
                return []
            return _check_unique([(_drop_name(lb), _go_max(lo, _go_min(hi, v))) for lb, v in vec])
        if f == "label_replace":
            return self.label_replace(vec, node.args)
        raise PromQLError(f"unsupported function \"{f}\"")

    def label_replace(self, vec: Vector, args: tuple[Expr, ...]) -> Vector:
        strings: list[str] = []
        for a in args[1:]:
            value = self.eval(a)
            assert isinstance(value, str)
            strings.append(value)
        dst, replacement, src, regex = strings
        try:
            compiled = go_regex("^(?s:" + regex + ")$")
        except re.error as exc:
            raise EvaluationError(f"invalid regular expression in label_replace(): {regex}") from exc
        if not _LABEL_NAME_RE.fullmatch(dst):
            raise EvaluationError(f"invalid destination label name in label_replace(): {dst}")
        out: Vector = []
        for labels, v in vec:
            m = compiled.fullmatch(labels.get(src, ""))
            if m is not None:
                result = expand_template(replacement, m)
                labels = dict(labels)
                if result:
                    labels[dst] = result
                else:
                    labels.pop(dst, None)
            out.append((labels, v))
        return _check_unique(out)

    def aggregate(self, node: Aggregate) -> Vector:
        vec = self.vector(self.eval(node.expr))
        if node.op in _PARAMETERISED:
            return self.top(node, vec)
        grouping = set(node.grouping)
        by = tuple(sorted(grouping))
        groups: dict[tuple[str | None, ...] | LabelKey, tuple[Labels, list[float]]] = {}
        for labels, v in vec:
            key: tuple[str | None, ...] | LabelKey
            if node.without:
                key = tuple(sorted((k, val) for k, val in labels.items() if k not in grouping and k != "__name__"))
            else:
                key = tuple(labels.get(k) for k in by)
            group = groups.get(key)
            if group is None:
                if node.without:
                    out_labels = dict(key)  # type: ignore[arg-type]
                else:
                    out_labels = {k: labels[k] for k in by if k in labels}
                groups[key] = (out_labels, [v])
            else:
                group[1].append(v)
        out: Vector = []
        for out_labels, values in groups.values():
            if node.op == "sum":
                value = _fsum(values)
            elif node.op == "avg":
                value = _fsum(values) / len(values)
            elif node.op == "count":
                value = float(len(values))
            elif node.op == "group":
                value = 1.0
            elif node.op == "max":
                value = _max_over(values)
            else:
                value = _min_over(values)
            out.append((out_labels, value))
        return out

    def top(self, node: Aggregate, vec: Vector) -> Vector:
        """topk/bottomk: per group, the k largest (smallest) samples with their own labels, NaN last."""
        assert node.param is not None
        k_value = self.eval(node.param)
        k = int(k_value) if isinstance(k_value, float) and not math.isnan(k_value) else 0
        if k < 1:
            return []
        grouping = set(node.grouping)
        groups: dict[tuple[object, ...], list[tuple[Labels, float]]] = {}
        for labels, v in vec:
            if node.without:
                key: tuple[object, ...] = tuple(sorted(
                    (n, val) for n, val in labels.items() if n not in grouping and n != "__name__"))
            else:
                key = tuple(labels.get(n) for n in sorted(grouping))
            groups.setdefault(key, []).append((labels, v))
        sign = -1.0 if node.op == "topk" else 1.0
        out: Vector = []
        for members in groups.values():
            members.sort(key=lambda m: (math.isnan(m[1]), sign * m[1] if not math.isnan(m[1]) else 0.0))
            out.extend(members[:k])
        return out

    def binary(self, node: Binary) -> _Value:
        lhs = self.eval(node.lhs)
        rhs = self.eval(node.rhs)
        op = node.op
        if isinstance(lhs, float) and isinstance(rhs, float):
            value, keep = _binop(op, lhs, rhs)
            if node.return_bool:
                return 1.0 if keep else 0.0
            return value
        if isinstance(lhs, float) or isinstance(rhs, float):
            return self.vector_scalar(node, lhs, rhs)
        left, right = self.vector(lhs), self.vector(rhs)
        matching = node.matching or VectorMatching()
        if op in _SET_OPS:
            return self.set_op(op, left, right, matching)
        return self.vector_vector(node, left, right, matching)

    def vector_scalar(self, node: Binary, lhs: _Value, rhs: _Value) -> Vector:
        swap = isinstance(lhs, float)
        vec = self.vector(rhs if swap else lhs)
        scalar_value = lhs if swap else rhs
        assert isinstance(scalar_value, float)
        op = node.op
        drop = op not in _COMPARISONS or node.return_bool
        out: Vector = []
        for labels, v in vec:
            a, b = (scalar_value, v) if swap else (v, scalar_value)
            value, keep = _binop(op, a, b)
            if op in _COMPARISONS and swap:
                value = v
            if node.return_bool:
                value, keep = (1.0 if keep else 0.0), True
            if keep:
                out.append((_drop_name(labels) if drop else labels, value))
        return out

    @staticmethod
    def signature(labels: Labels, matching: VectorMatching) -> LabelKey:
        if matching.on:
            return tuple((k, labels.get(k, "")) for k in sorted(matching.labels))
        ignored = set(matching.labels)
        return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__" and k not in ignored))

    def set_op(self, op: str, left: Vector, right: Vector, matching: VectorMatching) -> Vector:
        right_sigs = {self.signature(lb, matching) for lb, _ in right}
        if op == "and":
            return [(lb, v) for lb, v in left if self.signature(lb, matching) in right_sigs]
        if op == "unless":
            return [(lb, v) for lb, v in left if self.signature(lb, matching) not in right_sigs]
        left_sigs = {self.signature(lb, matching) for lb, _ in left}
        return left + [(lb, v) for lb, v in right if self.signature(lb, matching) not in left_sigs]

    def vector_vector(self, node: Binary, left: Vector, right: Vector, matching: VectorMatching) -> Vector:
        op = node.op
        card = matching.card
        if card == "one-to-many":
            left, right = right, left
        one_side: dict[LabelKey, tuple[Labels, float]] = {}
        for labels, v in right:
            sig = self.signature(labels, matching)
            if sig in one_side:
                side = "left" if card == "one-to-many" else "right"
                raise EvaluationError(
                    f"found duplicate series for the match group {dict(sig)} on the {side} hand-side of the "
                    "operation; many-to-many matching not allowed: matching labels must be unique on one side")
            one_side[sig] = (labels, v)
        drop = op not in _COMPARISONS or node.return_bool
        matched: set[LabelKey] = set()
        produced: set[LabelKey] = set()
        out: Vector = []
        for labels, v in left:
            sig = self.signature(labels, matching)
            other = one_side.get(sig)
            if other is None:
                continue
            if card == "one-to-one":
                if sig in matched:
                    raise EvaluationError("multiple matches for labels: many-to-one matching must be explicit "
                                          "(group_left/group_right)")
                matched.add(sig)
            vl, vr = v, other[1]
            if card == "one-to-many":
                vl, vr = vr, vl
            value, keep = _binop(op, vl, vr)
            if node.return_bool:
                value, keep = (1.0 if keep else 0.0), True
            if not keep:
                continue
            result = self.result_metric(labels, other[0], matching, drop)
            if card in ("many-to-one", "one-to-many"):
                key = tuple(sorted(result.items()))
                if key in produced:
                    raise EvaluationError("multiple matches for labels: grouping labels must ensure unique matches")
                produced.add(key)
            out.append((result, value))
        return out

    @staticmethod
    def result_metric(lhs: Labels, rhs: Labels, matching: VectorMatching, drop_name: bool) -> Labels:
        result = dict(lhs)
        if drop_name:
            result.pop("__name__", None)
        if matching.card == "one-to-one":
            if matching.on:
                keep = set(matching.labels)
                result = {k: v for k, v in result.items() if k in keep}
            else:
                for k in matching.labels:
                    result.pop(k, None)
        for k in matching.include:
            value = rhs.get(k, "")
            if value:
                result[k] = value
            else:
                result.pop(k, None)
        return result

