"""HDFS log line parsing as native Spark SQL expressions (no Python UDF on the hot path).

A raw line ``yyMMdd HHmmss pid LEVEL component: content`` becomes timestamp, pid, level, component,
content, event id and the distinct block ids it names. A line that is not a log record gets a
``reason`` (see :data:`hdfsad.schemas.REJECT_REASONS`); a record that matches no template gets
:data:`hdfsad.templates.UNKNOWN_EVENT_ID`.

Speed: templates are matched with literal substring searches (``locate`` chained so the fragments
must appear in order), most specific template first, in a single CASE expression. No regular
expression with wildcards is evaluated per template.
"""
from __future__ import annotations

from typing import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

from hdfsad.templates import UNKNOWN_EVENT_ID, Template, match_order

#: What a record starts with: date, time, pid, level, component, then the content.
HEADER_REGEX = r"^\d{6} \d{6} \d+ [A-Z]+ [^ :]+: "
#: A block id as HDFS writes it (signed 64-bit decimal).
BLOCK_REGEX = r"blk_-?\d+"
#: Control characters other than tab (CR/LF never reach us: the reader splits lines on them).
#: A line is binary when it is not valid UTF-8 or holds a NUL byte (both byte scans; a regex for
#: every control character was measured 5x slower than the whole rest of the check).
NUL = "\x00"

HEADER_FIELDS = ("date", "time", "pid", "level", "component", "content")


def template_regex(template: Template) -> str:
    """A Java regex that finds the template's fragments in order (anchors where the template has them)."""
    body = ".*?".join(r"\Q" + frag + r"\E" for frag in template.fragments)
    return ("^" if template.anchored_start else "") + body + ("$" if template.anchored_end else "")


def template_condition(template: Template, content: Column) -> Column:
    """True where ``content`` matches ``template``.

    A plain substring test on the template's longest fragment rules out almost every line at the
    cost of one byte search; only lines that pass it run the (literal-only, lazy) ordered regex.
    """
    guard = max(template.fragments, key=len)
    return content.contains(guard) & content.rlike(template_regex(template))


def _ordered_case(candidates: Sequence[Template], content: Column) -> Column:
    expr = None
    for t in candidates:
        cond = template_condition(t, content)
        expr = F.when(cond, F.lit(t.event_id)) if expr is None else expr.when(cond, F.lit(t.event_id))
    unknown = F.lit(UNKNOWN_EVENT_ID)
    return unknown if expr is None else expr.otherwise(unknown)


def _split_keyword(candidates: Sequence[Template], used: frozenset[str]) -> str | None:
    """The fragment whose absence rules out closest to half of ``candidates`` (None if useless)."""
    best, best_score = None, 0
    for frag in sorted({f for t in candidates for f in t.fragments} - used):
        ruled_out = sum(1 for t in candidates if any(frag in f for f in t.fragments))
        score = min(ruled_out, len(candidates) - ruled_out)
        if score > best_score:
            best, best_score = frag, score
    return best


def _dispatch(candidates: Sequence[Template], content: Column, depth: int, used: frozenset[str]) -> Column:
    """A keyword decision tree over the ordered template list; exact by construction.

    When a line lacks a keyword, no template with a fragment containing that keyword can match, so
    the first match in the remaining (still specificity-ordered) list is the first match overall.
    When the keyword is present nothing is ruled out and the next keyword is tried.
    """
    keyword = _split_keyword(candidates, used) if depth > 0 and len(candidates) > 4 else None
    if keyword is None:
        return _ordered_case(candidates, content)
    without = [t for t in candidates if not any(keyword in f for f in t.fragments)]
    used = used | {keyword}
    return F.when(content.contains(keyword), _dispatch(candidates, content, depth - 1, used)) \
        .otherwise(_dispatch(without, content, depth - 1, used))


def event_id_column(content: Column, depth: int = 2) -> Column:
    """The event id of a message: first matching template in :func:`match_order`, else unknown."""
    return _dispatch(match_order(), content, depth, frozenset()).cast("int")


def parse_lines(lines, max_line_chars: int):
    """Add the parsed fields to a DataFrame with a string column ``value`` (one raw line a row).

    Adds: ``ts`` (timestamp), ``pid`` (long), ``level``, ``component``, ``content``, ``event_id``
    (int), ``block_ids`` (array of distinct ids in order of appearance) and ``reason`` (null for a
    good record, else the reject reason). Fields of rejected lines are not meaningful.
    """
    value = F.col("value")
    # Stage 1: split the header once; later expressions reference these columns, so the
    # optimizer keeps them as one projection instead of re-splitting for every use.
    split = lines.select("*", F.split(value, " ", len(HEADER_FIELDS)).alias("_parts"))
    fields = split.select(
        "*",
        *[F.get("_parts", i).alias(f"_{name}") for i, name in enumerate(HEADER_FIELDS)],
    ).drop("_parts")
    content = F.col("_content")
    # Stage 2: everything else, each from the split fields.
    staged = fields.select(
        "*",
        F.try_to_timestamp(F.concat("_date", "_time"), F.lit("yyMMddHHmmss")).alias("ts"),
        F.array_distinct(F.regexp_extract_all(content, F.lit(BLOCK_REGEX), F.lit(0))).alias("block_ids"),
        event_id_column(content).alias("event_id"),
    )
    reason = (
        F.when(F.length(value) > max_line_chars, F.lit("too_long"))
        .when(~F.is_valid_utf8(value) | value.contains(NUL), F.lit("binary"))
        .when(~value.rlike(HEADER_REGEX), F.lit("bad_header"))
        .when(F.col("ts").isNull(), F.lit("bad_timestamp"))
        .when(F.size("block_ids") == 0, F.lit("no_block_id"))
    )
    return staged.select(
        *lines.columns,
        "ts",
        F.col("_pid").try_cast("bigint").alias("pid"),
        F.col("_level").alias("level"),
        F.expr("trim(TRAILING ':' FROM _component)").alias("component"),
        content.alias("content"),
        "event_id",
        "block_ids",
        reason.alias("reason"),
    )
