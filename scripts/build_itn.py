"""Build the ITN grammars shipped in daemon/text/grammars/ from WeTextProcessing (needs pynini: x86_64 only).

The daemon never runs this: it reads the shipped files with kaldifst (x86_64 and aarch64). Rebuild after
changing the WeTextProcessing pin, then commit the files. The build is deterministic (same bytes every run);
`--check` builds into a temporary folder and fails if the shipped files differ.
"""

from __future__ import annotations

import argparse
import filecmp
import logging
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.text.itn_fst import GRAMMARS, LANGUAGES, grammar_files  # noqa: E402


def build(dest: Path) -> list[Path]:
    """Compile the Chinese and English ITN grammars into dest (about 3 s); returns the files written."""
    from itn.chinese.inverse_normalizer import InverseNormalizer as Chinese  # needs pynini
    from itn.english.inverse_normalizer import InverseNormalizer as English

    logging.getLogger("wetext").setLevel(logging.WARNING)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # the same options as WeTextProcessing's defaults, which the shipped Chinese grammar in its wheel uses
        Chinese(cache_dir=tmp, overwrite_cache=True)
        English(cache_dir=tmp, overwrite_cache=True)
        written = []
        for lang in LANGUAGES:
            for shipped in grammar_files(lang):
                target = dest / shipped.name
                shutil.copyfile(Path(tmp) / shipped.name, target)
                written.append(target)
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=GRAMMARS, help=f"output folder (default {GRAMMARS})")
    ap.add_argument("--check", action="store_true", help="build into a temporary folder, compare with --dest")
    args = ap.parse_args()
    try:
        import pynini  # noqa: F401
    except ImportError:
        print("build-itn: pynini is not installed (x86_64 only: scripts/setup installs it there)", file=sys.stderr)
        return 69
    if not args.check:
        for path in build(args.dest):
            print(f"build-itn: wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        differ = [p.name for p in build(Path(tmp)) if not filecmp.cmp(p, args.dest / p.name, shallow=False)]
    if differ:
        print(f"build-itn: {', '.join(differ)} differ from a fresh build: run scripts/build-itn", file=sys.stderr)
        return 1
    print(f"build-itn: the grammars in {args.dest} are what WeTextProcessing builds", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
