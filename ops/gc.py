"""Collect old derived files that nothing in use refers to (``make gc``).

    python -m ops.gc [--data-dir data] [--artifacts-dir artifacts] [--dry-run]
                     [--min-age-minutes 60]

Prints what it removes (with ``--dry-run``: what it would remove), one line per
path with its size and why, then the total. What is kept and why, and how a
running flow's lease protects what it uses: ``mnist_autoencoder.lifecycle.gc`` and
docs/caching.md. A missing folder or an unreadable registry: one line, exit 2; a
path that could not be removed: listed, exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mnist_autoencoder.errors import UserError
from mnist_autoencoder.lifecycle.gc import DEFAULT_MIN_AGE_S, Plan, collect
from mnist_autoencoder.paths import resolve_dir

PROG = "python -m ops.gc"


def human(size: int) -> str:
    """Bytes as B, KiB, MiB, GiB or TiB (one decimal)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def format_plan(plan: Plan, dry_run: bool) -> str:
    lines = [f"note: {note}" for note in plan.notes]
    if plan.items:
        width = min(72, max(len(shown(item.path)) for item in plan.items))
        lines.append(f"{'SIZE':>10}  {'PATH':<{width}}  REASON")
        lines += [f"{human(item.size):>10}  {shown(item.path):<{width}}  {item.reason}"
                  for item in plan.items]
    failed = {path for path, _ in plan.failed}
    done = [item for item in plan.items if item.path not in failed]
    lines.append(f"total: {'would remove' if dry_run else 'removed'} "
                 f"{human(sum(item.size for item in done))} in {len(done)} path(s)"
                 + (" (dry run: nothing removed)" if dry_run else ""))
    lines += [f"could not remove {path}: {why}" for path, why in plan.failed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="the data folder (default: data)")
    parser.add_argument("--artifacts-dir", default="artifacts",
                        help="the artifacts folder (default: artifacts)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list what would be removed; remove nothing")
    parser.add_argument("--min-age-minutes", type=float, default=DEFAULT_MIN_AGE_S / 60,
                        help="never collect anything written more recently (default: "
                             f"{DEFAULT_MIN_AGE_S / 60:g})")
    args = parser.parse_args(argv)
    if args.min_age_minutes < 0:
        parser.error(f"--min-age-minutes {args.min_age_minutes:g}: give 0 or more")
    try:
        plan = collect(resolve_dir(args.data_dir), resolve_dir(args.artifacts_dir),
                       dry_run=args.dry_run, min_age=args.min_age_minutes * 60)
    except UserError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    print(format_plan(plan, args.dry_run))
    return 1 if plan.failed else 0


if __name__ == "__main__":
    sys.exit(main())
