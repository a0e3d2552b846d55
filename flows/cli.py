"""Command line for a flow: one ``--name value`` option per parameter, groups flattened.

A flow's parameters are typed groups (``DataConfig``, ``TrainingConfig``,
``PathsConfig``) and a few plain values; each field of a group becomes an option
of its own (``--epochs``, not ``--training``), typed and described by the group.
Bad values are refused here, before Prefect starts anything: one line on stderr
naming the parameter and what is allowed, exit status 2.

Every ``UserError`` takes that one path, wherever it is raised: here, in the flow
body, in a task (thread pool or Dask worker; ``run_stage`` re-raises the task's own
exception). ``main`` prints ``PROG: message`` and exits 2; while the flow runs, a
logging filter on Prefect's run loggers drops the traceback from the records of a
user error (the lines stay, the flow run is still Failed with the message in its
state). Any other exception is a bug: its traceback stays and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from flows.runners import dask_address
from mnist_autoencoder.errors import UserError
from mnist_autoencoder.roots import TRANSFERS

USAGE_ERROR = 2
INTERRUPTED = 130
# Prefect gives its temporary server 20 s to start; with both cores busy that is too
# little here. Every command line run (``make run`` too) waits this long instead.
SERVER_STARTUP_TIMEOUT_S = 180
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")  # the engines' run loggers


class DropUserErrorTraceback(logging.Filter):
    """Keep a run log record, but without the traceback when its exception is a UserError."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def user_errors_without_tracebacks() -> typing.Iterator[None]:
    """While a flow runs: no traceback for a user error in Prefect's run logs (console, API)."""
    loggers = [logging.getLogger(name) for name in RUN_LOGGERS]
    quiet = DropUserErrorTraceback()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def patient_server_startup(seconds: int = SERVER_STARTUP_TIMEOUT_S) -> int:
    """Give Prefect's temporary server at least ``seconds`` to start; return the timeout.

    Prefect reads its settings when imported, so the variable alone comes too late for
    this process: the process-wide settings are refreshed from the environment (public
    ``prefect.context.refresh_global_settings_context``). A larger value set by the user
    is kept. The server's own threads see it too (they read the global settings).
    """
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as SETTING

    if SETTING.value() < seconds or int(os.environ.get(STARTUP_TIMEOUT_ENV) or 0) < seconds:
        os.environ[STARTUP_TIMEOUT_ENV] = str(max(seconds, SETTING.value()))
        refresh_global_settings_context()
    return SETTING.value()


def _converter(annotation: Any) -> Callable[[str], Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (tuple, list):  # a comma-separated list: 2,4,8
        item = _converter(args[0])
        return lambda text: tuple(item(part) for part in text.split(",") if part.strip())
    if origin in (typing.Union, types.UnionType):  # e.g. str | None
        return _converter(next(a for a in args if a is not type(None)))
    if annotation is bool:
        return _boolean
    return annotation if annotation in (int, float) else str


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _is_group(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def options(flow) -> list[tuple[str, Any, Any, str]]:
    """(name, type, default, help) of every option of ``flow``, group fields flattened."""
    hints = typing.get_type_hints(flow.fn)
    docs = _arg_docs(inspect.getdoc(flow.fn) or "")
    found = []
    for name, param in inspect.signature(flow.fn).parameters.items():
        if _is_group(hints[name]):
            found += [(field, info.annotation, info.default, info.description or "")
                      for field, info in hints[name].model_fields.items()]
        else:
            found.append((name, hints[name], param.default, docs.get(name, "")))
    return found


def group_params(flow, flat: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{option: value}`` into the flow's keyword arguments (groups built, defaults kept)."""
    hints = typing.get_type_hints(flow.fn)
    params: dict[str, Any] = {}
    used = set()
    for name in inspect.signature(flow.fn).parameters:
        if _is_group(hints[name]):
            fields = {f: flat[f] for f in hints[name].model_fields if f in flat}
            params[name] = hints[name](**fields)
            used |= set(fields)
        elif name in flat:
            params[name] = flat[name]
            used.add(name)
    unknown = sorted(set(flat) - used)
    if unknown:
        raise TypeError(f"{flow.name} has no parameter {unknown[0]!r}")
    return params


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (--help lists the parameters)\n")


def build_parser(flow, prog: str | None = None) -> argparse.ArgumentParser:
    docs = inspect.getdoc(flow.fn) or ""
    parser = _Parser(prog=prog, description=docs.split("\n\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for name, annotation, default, help_text in options(flow):
        flags = dict.fromkeys([f"--{name.replace('_', '-')}", f"--{name}"])
        required = default is inspect.Parameter.empty
        parser.add_argument(*flags, dest=name, type=_converter(annotation), required=required,
                            default=None if required else default,
                            help=help_text.replace("%", "%%"),  # argparse formats help with %
                            metavar=name.upper())
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


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    name = ".".join(str(part) for part in first["loc"])
    return f"Invalid parameter {name}={first.get('input')!r}: {first['msg']}."


def main(flow, validate: Callable[..., None], argv: Sequence[str] | None = None,
         prog: str | None = None) -> None:
    """Parse, validate, run the flow, print its summary.

    A ``UserError`` (or a bad value pydantic refuses) from anywhere: one line, exit 2.
    """
    parser = build_parser(flow, prog)
    flat = vars(parser.parse_args(argv))
    try:
        params = group_params(flow, flat)
        validate(**params)
        dask_address()  # a malformed MNIST_AE_DASK_ADDRESS is refused before any work
    except ValidationError as exc:
        parser.exit(USAGE_ERROR, f"{parser.prog}: {_one_line(exc)}\n")
    except UserError as exc:
        parser.exit(USAGE_ERROR, f"{parser.prog}: {exc}\n")
    patient_server_startup()
    try:
        with user_errors_without_tracebacks():
            result = flow(**params)
    except KeyboardInterrupt:
        print(f"\n{flow.name} interrupted. Finished stages are cached and training keeps a "
              "checkpoint per epoch: run the same command again to resume.", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    except UserError as exc:  # the run logs said it without a traceback; the state is Failed
        parser.exit(USAGE_ERROR, f"{parser.prog}: {exc}\n")
    except Exception as exc:  # a bug: the Prefect logs already hold the traceback
        print(f"\n{flow.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n" + result["summary"])
    for line in TRANSFERS:  # on a store: what the flow pulled and pushed (docs/storage.md)
        print(f"Storage: {line}")
