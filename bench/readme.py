#!/usr/bin/env python3
"""Run the README's shell blocks word for word in a fresh clone, as a new user would.

    python bench/readme.py                 # clone HEAD to ../readme_check, run, report
    python bench/readme.py --in-place      # run in this checkout (faster, not fresh)

A block runs when the line above its ```bash fence is a marker,
``<!-- readme-check: expect "TEXT" ... -->``: the block runs as one ``bash -e`` script in the
clone (so ``../shared/data`` resolves as in the README), must exit 0 and print every TEXT.
Unmarked blocks (e.g. ``ros2 launch``, which needs a ROS 2 installation) are listed as not
run. Background jobs a block starts are stopped when it ends. The clone goes next to this
checkout because the README's paths are relative to ``../shared/data``.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r'<!--\s*readme-check:(.*?)-->')


class Block(NamedTuple):
    line: int            # 1-based line of the fence in README.md
    code: str
    expect: List[str]    # texts the output must contain; None: not run


def blocks(readme: str) -> List[Block]:
    """The ```bash blocks of ``readme`` with their markers (expect None when unmarked)."""
    out, lines = [], readme.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == '```bash':
            start, body = i, []
            i += 1
            while i < len(lines) and lines[i].strip() != '```':
                body.append(lines[i])
                i += 1
            m = MARKER.search(lines[start - 1]) if start else None
            expect = None
            if m:
                words = shlex.split(m.group(1).strip())
                expect = words[1:] if words[:1] == ['expect'] else []
            out.append(Block(start + 1, '\n'.join(body), expect))
        i += 1
    return out


def run_block(block: Block, cwd: Path, timeout: float) -> dict:
    """Run one block as a bash script in its own process group; stop what it leaves behind."""
    t = time.monotonic()
    proc = subprocess.Popen(['bash', '-e', '-o', 'pipefail', '-c', block.code], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, code = proc.communicate()[0] + f'\n[timeout after {timeout:.0f} s]', 'timeout'
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # background jobs the block started
    except ProcessLookupError:
        pass
    missing = [e for e in block.expect if e not in output]
    return {'line': block.line, 'code': code, 'seconds': time.monotonic() - t,
            'missing': missing, 'output': output}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--clone-to', default=str(ROOT.parent / 'readme_check'))
    p.add_argument('--in-place', action='store_true', help='run in this checkout')
    p.add_argument('--timeout', type=float, default=1800, help='per block, s')
    p.add_argument('--log', default='outputs/readme_check.log')
    p.add_argument('--only', help='run only the marked blocks containing this text')
    a = p.parse_args(argv)
    cwd = ROOT
    if not a.in_place:
        cwd = Path(a.clone_to).resolve()
        if cwd.exists():
            subprocess.run(['rm', '-rf', str(cwd)], check=True)
        subprocess.run(['git', 'clone', '-q', str(ROOT), str(cwd)], check=True)
        head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=cwd,
                              capture_output=True, text=True).stdout.strip()
        print(f'fresh clone of {head} in {cwd}', flush=True)
    print(f'load average {os.getloadavg()[0]:.2f}', flush=True)
    found = blocks((cwd / 'README.md').read_text())
    log = ROOT / a.log
    log.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    with open(log, 'w') as f:
        for b in found:
            first = b.code.strip().splitlines()[0] if b.code.strip() else ''
            if b.expect is None or (a.only and a.only not in b.code):
                why = 'no readme-check marker' if b.expect is None else '--only'
                print(f'README.md:{b.line}: not run ({why}): {first}')
                continue
            r = run_block(b, cwd, a.timeout)
            ok = r['code'] == 0 and not r['missing']
            failed += not ok
            print(f'README.md:{b.line}: {"ok  " if ok else "FAIL"} exit {r["code"]}, '
                  f'{r["seconds"]:.0f} s: {first}'
                  + (f'; missing output {r["missing"]}' if r['missing'] else ''), flush=True)
            f.write(f'===== README.md:{b.line} exit {r["code"]}\n{b.code}\n----- output\n'
                    f'{r["output"]}\n')
    print(f'{len(found)} blocks, {failed} failed; outputs in {log}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
