"""Word (.docx) export of history records (python-docx): a title, then each line with its time (and speaker).

A selection gets a heading per record (its file or time); a session is one run of timed lines. With speakers,
consecutive lines of one speaker form one paragraph (a turn): `[start] Name: what was said`, the name in bold;
in a session a turn runs across utterances. Lines without a speaker stay one paragraph each.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from itertools import groupby
from typing import TYPE_CHECKING, Any

from docx import Document
from docx.shared import Pt, RGBColor

from daemon.transcript import join_texts

if TYPE_CHECKING:
    from daemon.output.exports import Cue

_GREY = RGBColor(0x6B, 0x6B, 0x6B)


def _stamp(seconds: float) -> str:
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _turns(cues: Sequence[Cue]) -> Iterator[list[Cue]]:
    """Runs of consecutive cues of one speaker (a turn); a cue without a speaker stands alone."""
    for speaker, run in groupby(cues, key=lambda c: c.speaker):
        if speaker is None:
            yield from ([c] for c in run)
        else:
            yield list(run)


def _add_turn(doc: Any, turn: list[Cue]) -> None:
    """One paragraph: the turn's start time in grey, its speaker in bold, then what was said."""
    p = doc.add_paragraph()
    stamp = p.add_run(f"[{_stamp(turn[0].start)}] ")
    stamp.font.color.rgb = _GREY
    stamp.font.size = Pt(9)
    if turn[0].speaker:
        p.add_run(f"{turn[0].speaker}: ").bold = True
    p.add_run(join_texts([c.text for c in turn], turn[0].record.get("language") or ""))


def to_docx(title: str, records: Sequence[dict[str, Any]], cues: Sequence[Cue], headed: bool) -> bytes:
    """A selection (`headed`) has a heading per record; consecutive lines of one speaker are one paragraph."""
    from daemon.output.exports import record_title

    doc = Document()
    doc.core_properties.title = title
    doc.core_properties.author = "asrbox"
    doc.add_heading(title, level=1)
    groups = [list(g) for _, g in groupby(cues, key=lambda c: c.record["id"])] if headed else [list(cues)]
    for lines in groups:
        if headed and lines:
            doc.add_heading(record_title(lines[0].record), level=2)
        for turn in _turns(lines):
            _add_turn(doc, turn)
    if not cues:
        doc.add_paragraph(f"({len(records)} records, no text)")
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()
