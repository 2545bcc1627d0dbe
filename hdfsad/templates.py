"""The HDFS event templates: loaded once from the file the package ships.

Event ids follow the reference data: template ``E<n>`` is event id ``n - 1`` (0..29). A well-formed
log line that matches no template gets :data:`UNKNOWN_EVENT_ID`.

A template is a list of literal fragments separated by ``<*>`` (zero or more characters). A line
matches when the fragments occur in order, the first at the very start when the template does not
begin with ``<*>`` and the last at the very end when it does not end with ``<*>``. Templates are
tried most specific first (most literal characters), so the first match wins.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import yaml

#: Reserved id for a well-formed line that matches none of the 30 templates.
UNKNOWN_EVENT_ID = 30
#: Number of distinct event ids the parser can emit (30 templates + unknown).
NUM_EVENT_IDS = 31
#: Bumped whenever the mapping from lines to event ids changes; stored with every model.
EVENT_ENCODING_VERSION = 1

WILDCARD = "<*>"


@dataclass(frozen=True)
class Template:
    name: str
    event_id: int
    template: str
    level: str
    component: str
    example: str

    @property
    def fragments(self) -> tuple[str, ...]:
        return tuple(f for f in self.template.split(WILDCARD) if f)

    @property
    def anchored_start(self) -> bool:
        return not self.template.startswith(WILDCARD)

    @property
    def anchored_end(self) -> bool:
        return not self.template.endswith(WILDCARD)

    @property
    def specificity(self) -> int:
        return sum(len(f) for f in self.fragments)

    def matches(self, content: str) -> bool:
        """Pure-Python reference of the Spark matcher (see :mod:`hdfsad.parsing`)."""
        frags = self.fragments
        pos = 0
        for i, frag in enumerate(frags):
            if i == 0 and self.anchored_start:
                if not content.startswith(frag):
                    return False
                pos = len(frag)
                continue
            if i == len(frags) - 1 and self.anchored_end:
                return len(content) - len(frag) >= pos and content.endswith(frag)
            found = content.find(frag, pos)
            if found < 0:
                return False
            pos = found + len(frag)
        return True


@functools.lru_cache(maxsize=1)
def load_templates() -> tuple[Template, ...]:
    """The shipped templates, in event-id order."""
    text = resources.files("hdfsad.resources").joinpath("hdfs_templates.yaml").read_text("utf-8")
    rows = yaml.safe_load(text)["templates"]
    templates = tuple(Template(**row) for row in rows)
    ids = [t.event_id for t in templates]
    if ids != list(range(len(templates))) or any(t.name != f"E{t.event_id + 1}" for t in templates):
        raise ValueError("hdfs_templates.yaml: event ids must be 0..n-1 with names E1..En in order")
    return templates


def match_order() -> tuple[Template, ...]:
    """Templates in the order the parser tries them: most specific first, ties by event id."""
    return tuple(sorted(load_templates(), key=lambda t: (-t.specificity, t.event_id)))


def classify(content: str) -> int:
    """Event id of a message content (pure Python; the Spark path must agree with it)."""
    for t in match_order():
        if t.matches(content):
            return t.event_id
    return UNKNOWN_EVENT_ID


def template_text(event_id: int) -> str:
    if event_id == UNKNOWN_EVENT_ID:
        return "<unknown template>"
    return load_templates()[event_id].template
