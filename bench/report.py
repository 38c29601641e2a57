"""Write one benchmark's section into docs/benchmarks.md (the others untouched); the benches' shared main()."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Measured by `make bench` (or `python -m bench.<name>`) on the local cloud (devstack), each
against a baseline measured in the same run. Figures are from one machine; compare ratios,
not absolute times.
"""


def write_section(name: str, markdown: str) -> Path:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else HEADER
    block = f"{start}\n{markdown.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    return DOC


def machine() -> str:
    import os

    return (f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"{platform.machine()}")


def bench_main(argv: list[str] | None, *, name: str, section: str, raw: Path, rounds: int,
               measure: Callable[[argparse.Namespace], dict[str, Any]], render: Callable[[dict[str, Any]], str],
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """The `main()` of a bench against rclone: `--rounds`, `--render-only` (re-render the raw
    JSON of the last measurement, no cloud), check for rclone, measure, save raw, render."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--rounds", type=int, default=rounds)
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--render-only", action="store_true", help=f"re-render {raw.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.render_only:
        if not raw.exists():
            raise SystemExit(f"--render-only: no measurement at {raw.relative_to(ROOT)} (gitignored); "
                             "run the bench once without it")
        data = json.loads(raw.read_text())
    else:
        if not shutil.which("rclone"):
            raise SystemExit("rclone is not installed (apt-get install -y rclone)")
        data = measure(args)
        raw.parent.mkdir(exist_ok=True)
        raw.write_text(json.dumps(data, indent=1))
    markdown = render(data)
    print(markdown)
    print(f"wrote {write_section(section, markdown)}", file=sys.stderr)
    return 0
