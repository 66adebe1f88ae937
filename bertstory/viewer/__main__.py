"""``python -m bertstory.viewer RUN_DIR [--compare RUN_B] [--out PAGE] [--segments N] [--dtype D]``."""

from __future__ import annotations

import argparse
import sys

from bertstory.cli import setup_environment, user_errors
from bertstory.viewer.options import DTYPES
from bertstory.viewer.page import build


def main(argv: list[str] | None = None) -> None:
    """Rebuild a run's viewer.html from metrics.json and the saved maps (or one page for two runs)."""
    parser = argparse.ArgumentParser(prog="python -m bertstory.viewer", description=main.__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--compare", metavar="RUN_B", default=None,
                        help="a second run over the same segments (another method, a fine-tuned model): "
                             "the page switches between the two; written to RUN_DIR/viewer-compare.html")
    parser.add_argument("--out", default=None, help="where to write the page")
    parser.add_argument("--segments", type=int, default=None, help="how many saved segments (viewer.max_segments)")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="storage of the maps (viewer.dtype)")
    args = parser.parse_args(argv)
    setup_environment()
    with user_errors():
        page = build(args.run_dir, compare=args.compare, out=args.out, max_segments=args.segments, dtype=args.dtype)
    print(f"viewer: {page.describe()}")


if __name__ == "__main__":
    sys.exit(main())
