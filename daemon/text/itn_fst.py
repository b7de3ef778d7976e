"""WeTextProcessing's ITN grammars, run on kaldifst: one runtime on x86_64 and aarch64.

The grammars are WeNet's WeTextProcessing 1.2.0 (weighted FSTs written with pynini), compiled once where pynini
exists (`scripts/build-itn`, x86_64) and shipped in `daemon/text/grammars/`; kaldifst (OpenFst's runtime, wheels
for x86_64 and aarch64) reads and runs them. pynini itself has x86_64 wheels only, so a Jetson or a Raspberry Pi
runs the same files, with the same results, as a PC. `tests/test_itn.py` checks, where pynini is installed, that
the shipped files are byte for byte what WeTextProcessing builds and that both runtimes tag alike.

kaldifst is imported on first use, so a box with ITN switched off never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GRAMMARS = Path(__file__).with_name("grammars")
LANGUAGES = ("zh", "en")

# WeTextProcessing's field order per token kind, which its verbalizers expect (tn/token_parser.py, ITN_ORDERS);
# a kind listed here keeps only these fields, unless it says preserve_order
_ORDERS = {
    "date": ("year", "month", "day", "preserve_order"),
    "fraction": ("sign", "numerator", "denominator"),
    "measure": ("numerator", "denominator", "value", "units"),
    "money": ("currency", "value", "decimal", "quantity"),
    "time": ("hour", "minute", "second", "noon", "zone"),
    "telephone": ("country_code", "number_part"),
    "electronic": ("username", "domain", "protocol"),
}


def grammar_files(lang: str) -> tuple[Path, Path]:
    """The tagger and the verbalizer of one language."""
    return GRAMMARS / f"{lang}_itn_tagger.fst", GRAMMARS / f"{lang}_itn_verbalizer.fst"


def token_string(kind: str, fields: dict[str, str]) -> str:
    """One token as the verbalizer reads it: `date { year: "2025" month: "3" }`, fields in the grammar's order."""
    keys: tuple[str, ...] | list[str] = list(fields)
    if kind in _ORDERS and fields.get("preserve_order") != "true":
        keys = _ORDERS[kind]
    body = "".join(f' {k}: "{_escape(fields[k])}"' for k in keys if k in fields)
    return f"{kind} {{{body} }}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class Grammar:
    """One language's tagger + verbalizer. Loading reads about 1 MB per file (tens of ms)."""

    def __init__(self, lang: str) -> None:
        import kaldifst  # lazy: only a box with ITN on loads it

        self._kf: Any = kaldifst
        tagger, verbalizer = grammar_files(lang)
        self._tagger = self._read(tagger)
        self._verbalizer = self._read(verbalizer)

    def _read(self, path: Path) -> Any:
        if not path.is_file():
            raise FileNotFoundError(f"ITN grammar {path} is missing (rebuild with scripts/build-itn)")
        fst = self._kf.StdVectorFst.read(str(path))
        self._kf.arcsort(fst, "ilabel")  # composition looks each input byte up in these arcs (match_side right)
        return fst

    def tag(self, text: str) -> str:
        """The best tagging: `date { year: "2025" } char { value: "开" }`."""
        return self._best(text, self._tagger)

    def verbalize(self, kind: str, fields: dict[str, str]) -> str:
        """One token's written form, by the grammar's own verbalizer."""
        return self._best(token_string(kind, fields), self._verbalizer)

    def _best(self, text: str, fst: Any) -> str:
        if not text:
            return ""
        # a lone surrogate raises here (the caller keeps the text as it was); a NUL byte is the FST's epsilon and
        # drops out of the output, as it does in pynini
        data = text.encode("utf-8")
        lines = [f"{i} {i + 1} {b}" for i, b in enumerate(data)]
        lines.append(str(len(data)))
        lattice = self._kf.compose(self._kf.compile("\n".join(lines), acceptor=True), fst, match_side="right")
        ok, _, olabels, _ = self._kf.get_linear_symbol_sequence(self._kf.shortest_path(lattice, 1))
        if not ok or lattice.start < 0:
            raise ValueError("the grammar has no path for this text")
        return bytes(olabels).decode("utf-8")


def unavailable() -> str | None:
    """Why ITN cannot run on this box (one line), or None when both grammars load."""
    try:
        import kaldifst  # noqa: F401
    except ImportError as exc:
        return f"the kaldifst package is not installed ({exc}); run scripts/setup"
    try:
        for lang in LANGUAGES:
            Grammar(lang)
    except Exception as exc:  # a missing or unreadable grammar file: say which
        return f"{type(exc).__name__}: {exc}"
    return None
