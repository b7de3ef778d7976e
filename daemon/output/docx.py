"""Word (.docx) export of history records (python-docx): a title, then each line with its time (and speaker).

A selection gets a heading per record (its file or time); a session is one run of timed lines.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING, Any

from docx import Document
from docx.shared import Pt, RGBColor

if TYPE_CHECKING:
    from daemon.output.exports import Cue

_GREY = RGBColor(0x6B, 0x6B, 0x6B)


def _stamp(seconds: float) -> str:
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def to_docx(title: str, records: Sequence[dict[str, Any]], cues: Sequence[Cue], headed: bool) -> bytes:
    from daemon.output.exports import record_title

    doc = Document()
    doc.core_properties.title = title
    doc.core_properties.author = "asrbox"
    doc.add_heading(title, level=1)
    for _, group in groupby(cues, key=lambda c: c.record["id"]):
        lines = list(group)
        if headed:
            doc.add_heading(record_title(lines[0].record), level=2)
        for cue in lines:
            p = doc.add_paragraph()
            stamp = p.add_run(f"[{_stamp(cue.start)}] ")
            stamp.font.color.rgb = _GREY
            stamp.font.size = Pt(9)
            if cue.speaker:
                p.add_run(f"{cue.speaker}: ").bold = True
            p.add_run(cue.text)
    if not cues:
        doc.add_paragraph(f"({len(records)} records, no text)")
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()
