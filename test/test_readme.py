"""The README's runnable shell blocks (``bench/readme.py`` runs them in a fresh clone): they are
marked, and every ``hndesc-vo`` command in them parses with the CLI of this tree."""
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'bench'))

from readme import blocks  # noqa: E402

from hndesc_ros.cli import build_parser  # noqa: E402


def test_readme_blocks_are_marked_and_their_commands_parse():
    found = blocks((ROOT / 'README.md').read_text())
    marked = [b for b in found if b.expect is not None]
    assert len(marked) >= 3, 'the quick start, the install and the pip-only ROS flow'
    parser = build_parser()
    commands = 0
    for b in marked:
        for line in b.code.replace('\\\n', ' ').splitlines():  # continuation lines joined
            words = shlex.split(line.split(' #')[0].split('&')[0])
            if words[:1] != ['hndesc-vo']:
                continue
            commands += 1
            try:
                parser.parse_args(words[1:])
            except SystemExit:
                raise AssertionError(f'README.md:{b.line}: does not parse: {line}') from None
    assert commands >= 5
