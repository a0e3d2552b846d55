"""Command line for a flow: one ``--name value`` option per flow parameter."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence


def _converter(annotation: str):
    if annotation.startswith(("tuple[", "list[")):  # a comma-separated list: 2,4,8
        item = _converter(annotation.split("[", 1)[1])
        return lambda text: tuple(item(part) for part in text.split(",") if part.strip())
    if annotation == "bool":
        return _boolean
    if "int" in annotation and "float" not in annotation:
        return int
    if "float" in annotation:
        return float
    return str


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def build_parser(flow, prog: str | None = None) -> argparse.ArgumentParser:
    fn = flow.fn
    docs = inspect.getdoc(fn) or ""
    parser = argparse.ArgumentParser(
        prog=prog, description=docs.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    arg_docs = _arg_docs(docs)
    for name, param in inspect.signature(fn).parameters.items():
        annotation = str(param.annotation)
        flags = dict.fromkeys([f"--{name.replace('_', '-')}", f"--{name}"])
        parser.add_argument(*flags, dest=name,
                            type=_converter(annotation), default=param.default,
                            help=arg_docs.get(name, ""), metavar=name.upper())
    return parser


def _arg_docs(docstring: str) -> dict[str, str]:
    """Parse the ``Args:`` section of a Google-style docstring."""
    docs: dict[str, str] = {}
    current = None
    in_args = False
    for line in docstring.splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            in_args = True
            continue
        if not in_args:
            continue
        if not stripped:
            break
        head, sep, rest = stripped.partition(":")
        indent = len(line) - len(line.lstrip())
        if sep and head.isidentifier() and indent == 4:
            current = head
            docs[current] = rest.strip()
        elif current:
            docs[current] += " " + stripped
    return docs


def main(flow, argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    args = vars(build_parser(flow, prog).parse_args(argv))
    try:
        result = flow(**args)
    except Exception as exc:  # the Prefect logs already hold the traceback
        print(f"\n{flow.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n" + result["summary"])


