"""A small recursive-descent parser for the part of LogQL the dashboards use, to catch a broken query before
Grafana does. Loki cannot run here, so this is a parse check, not Loki's own parser.

Grammar (after Loki's documentation: log queries, metric queries, vector aggregations):

    query       := metric | log
    log         := selector pipeline*
    selector    := "{" matcher ("," matcher)* "}"
    matcher     := IDENT ("=" | "!=" | "=~" | "!~") STRING
    pipeline    := ("|=" | "!=" | "|~" | "!~") STRING | "|" ("json" | "logfmt") | "|" "line_format" STRING
                 | "|" IDENT ("=" | "!=" | "=~" | "!~") STRING
    metric      := RANGE_FN "(" log "[" DURATION "]" ")"
                 | AGG [grouping] "(" [NUMBER ","] metric ")" [grouping]
    grouping    := ("by" | "without") "(" IDENT ("," IDENT)* ")"

Regular expressions in =~, !~, |~ and !~ strings must compile (Python's re stands in for RE2 here; the
dashboards use only syntax both share).
"""

from __future__ import annotations

import re

RANGE_FUNCTIONS = {"count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time"}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk"}
_TOKEN = re.compile(r'''\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<duration>\d+(?:ms|s|m|h|d|w|y))\b
                       |(?P<number>\d+(?:\.\d+)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
                       |(?P<op>\|=|\|~|!=|!~|=~|[{}()\[\],|=]))''', re.X)


class LogQLError(ValueError):
    pass


def parse(query: str) -> None:
    """Raise LogQLError (with the position) unless ``query`` is a log or metric query of the grammar above."""
    parser = _Parser(_tokens(query))
    if parser.peek()[1] in AGGREGATIONS | RANGE_FUNCTIONS:
        parser.metric()
    else:
        parser.log()
    if parser.peek()[0] != "end":
        raise LogQLError(f"unexpected {parser.peek()[1]!r} after the query")


def _tokens(query: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(query.rstrip()):
        match = _TOKEN.match(query, position)
        if not match or match.end() == position:
            raise LogQLError(f"cannot read {query[position:position + 12]!r} at {position}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens + [("end", "")]


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.index = tokens, 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.index]

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        token_kind, token = self.peek()
        if (kind and token_kind != kind) or (value and token != value):
            raise LogQLError(f"expected {value or kind}, found {token!r}")
        self.index += 1
        return token

    def log(self) -> None:
        self.selector()
        while self.peek()[1] in ("|=", "!=", "|~", "!~", "|"):
            self.stage()

    def selector(self) -> None:
        self.take("op", "{")
        self.matcher()
        while self.peek()[1] == ",":
            self.take("op", ",")
            self.matcher()
        self.take("op", "}")

    def matcher(self) -> None:
        self.take("ident")
        operator = self.take("op")
        if operator not in ("=", "!=", "=~", "!~"):
            raise LogQLError(f"{operator!r} is not a label matcher")
        self.string(regex=operator in ("=~", "!~"))

    def stage(self) -> None:
        operator = self.take("op")
        if operator in ("|=", "!=", "|~", "!~"):
            self.string(regex=operator in ("|~", "!~"))
            return
        name = self.take("ident")
        if name in ("json", "logfmt"):
            return
        if name == "line_format":
            self.string(regex=False)
            return
        self.matcher_after(name)

    def matcher_after(self, _name: str) -> None:
        operator = self.take("op")
        if operator not in ("=", "!=", "=~", "!~"):
            raise LogQLError(f"{operator!r} is not a label filter")
        self.string(regex=operator in ("=~", "!~"))

    def string(self, regex: bool) -> None:
        token = self.take("string")
        text = token[1:-1] if token.startswith("`") else bytes(token[1:-1], "utf-8").decode("unicode_escape")
        if regex:
            try:
                re.compile(text)
            except re.error as exc:
                raise LogQLError(f"regular expression {text!r}: {exc}") from exc

    def metric(self) -> None:
        name = self.take("ident")
        if name in RANGE_FUNCTIONS:
            self.take("op", "(")
            self.log()
            self.take("op", "[")
            self.take("duration")
            self.take("op", "]")
            self.take("op", ")")
            return
        if name not in AGGREGATIONS:
            raise LogQLError(f"{name!r} is not a LogQL function")
        self.grouping()
        self.take("op", "(")
        if name in ("topk", "bottomk"):
            self.take("number")
            self.take("op", ",")
        self.metric()
        self.take("op", ")")
        self.grouping()

    def grouping(self) -> None:
        if self.peek()[1] not in ("by", "without"):
            return
        self.take("ident")
        self.take("op", "(")
        self.take("ident")
        while self.peek()[1] == ",":
            self.take("op", ",")
            self.take("ident")
        self.take("op", ")")
