"""``python -m tests.vectors [--out DIR] [--check]``: write or check the wire vectors."""

from __future__ import annotations

import argparse
import sys

from tests.vectors import default_dir, generate, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.vectors", description=__doc__)
    parser.add_argument("--out", default=str(default_dir()), help="directory (docs/vectors)")
    parser.add_argument(
        "--check", action="store_true", help="compare with the files there; write nothing"
    )
    args = parser.parse_args(argv)
    from pathlib import Path

    out = Path(args.out)
    differ = []
    for name, content in generate().items():
        text = render(content)
        path = out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                differ.append(name)
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(text.encode()):,} bytes)")
    if differ:
        print(f"out of date: {', '.join(differ)} (run python -m tests.vectors)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
