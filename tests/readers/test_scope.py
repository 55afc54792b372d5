"""The template scope rules the decoder and the export's search share (readers/scope.py)."""

from __future__ import annotations

from obserae_forensics.readers.scope import (
    DUPLICATE_WINDOW,
    SAME_NUMBER,
    TAKEOVER_GAP_US,
    TemplateScope,
)
from obserae_forensics.readers.templates import FieldSpec, Template

FLOW = Template(256, (FieldSpec(8, 4), FieldSpec(12, 4)))
WIDER = Template(256, (FieldSpec(8, 4), FieldSpec(12, 4), FieldSpec(1, 4)))


def test_a_port_reads_its_own_definition_and_a_port_without_any_the_latest() -> None:
    scope: TemplateScope[str] = TemplateScope()
    for port, when in ((1, 0), (2, 10), (3, 20)):
        scope.arrive(port, when)
    assert scope.define(1, FLOW, "first") == "new"
    assert scope.define(2, WIDER, "second") == "new"
    assert scope.port_of(1, 256) == 1 and scope.values[1, 256] == "first"
    assert scope.port_of(3, 256) == 2  # defines nothing: the exporter's latest
    assert scope.port_of(3, 257) is None
    scope.define(3, Template(300, (FieldSpec(1, 4),)), "own")
    assert scope.port_of(3, 256) is None  # defines templates now: only its own


def test_a_refresh_keeps_the_definition_and_the_latest_where_they_were() -> None:
    scope: TemplateScope[str] = TemplateScope()
    scope.define(1, FLOW, "a")
    scope.define(2, WIDER, "b")
    assert scope.define(1, Template(256, FLOW.fields), "a again") == "refresh"
    assert scope.values[1, 256] == "a" and scope.latest[256] == "b"
    assert scope.latest_port[256] == 2
    assert scope.define(1, WIDER, "c") == "changed" and scope.latest_port[256] == 1


def test_a_port_after_a_silence_takes_over_through_restarts() -> None:
    scope: TemplateScope[str] = TemplateScope()
    assert scope.arrive(1, 0)
    scope.define(1, FLOW, "a")
    assert not scope.arrive(1, 5)
    assert scope.arrive(2, 5 + TAKEOVER_GAP_US)  # silent long enough: the same process
    scope.define(2, Template(300, (FieldSpec(1, 4),)), "b")
    assert scope.port_of(2, 256) == 1
    assert scope.arrive(3, 6 + 2 * TAKEOVER_GAP_US)  # restarted again: still its lineage
    scope.define(3, Template(301, (FieldSpec(1, 4),)), "c")
    assert scope.took_over(3, 1) and scope.port_of(3, 256) == 1
    assert scope.arrive(4, 7 + 2 * TAKEOVER_GAP_US)  # began while port 3 spoke: another
    scope.define(4, Template(302, (FieldSpec(1, 4),)), "d")
    assert scope.port_of(4, 256) is None
    scope.arrive(3, 8 + 2 * TAKEOVER_GAP_US)
    scope.forget_port(4)  # a new association in its slot decides again at its first
    assert scope.arrive(4, 9 + 3 * TAKEOVER_GAP_US) and scope.port_of(4, 256) == 1


def test_copies_among_the_last_messages_of_a_number_are_duplicates() -> None:
    scope: TemplateScope[str] = TemplateScope()
    messages = [bytes([i]) for i in range(SAME_NUMBER + 1)]
    assert not any(scope.duplicate(7, m) for m in messages)
    assert all(scope.duplicate(7, m) for m in messages[1:])
    assert not scope.duplicate(7, messages[0])  # pushed out by the later ones
    for sequence in range(8, 8 + 2 * DUPLICATE_WINDOW + 1):
        scope.duplicate(sequence, b"x")
    assert len(scope.recent) <= 2 * DUPLICATE_WINDOW
    assert not scope.duplicate(7, messages[1])  # the window moved on
