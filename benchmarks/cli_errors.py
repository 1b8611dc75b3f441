"""One line per failure, for every ``mcbench`` command.

The ``mcbench`` typer app uses :class:`OneLineErrors` as its click group: whatever a
command raises (a user error, an OS or SQLite error, a corrupt image, a bug) ends as
one ``error: ...`` line on stderr and a non-zero exit (1; 2 for usage errors; 130 for
Ctrl-C). ``--debug`` (or ``MCBENCH_DEBUG=1``) prints the traceback first.
Commands still raise ordinary exceptions; none needs its own try/except.
"""
from __future__ import annotations

import os
import sqlite3
import traceback
from typing import Any

import typer
from typer.core import TyperGroup

from mcbench.benchmarks.errors import McbenchError
from mcbench.methods.registry import UnknownMethodError

try:  # typer >= 0.24 vendors its own click as typer._click; older typer uses click itself
    from typer._click import exceptions as _cx
    from typer._click import globals as _cx_globals
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _cx
    from click import globals as _cx_globals

# exits and help text, not errors (typer.Exit/Abort are click's own classes in older typer)
_PASS_THROUGH = tuple({typer.Exit, typer.Abort, *(getattr(_cx, n) for n in ("Exit", "Abort", "NoArgsIsHelpError")
                                                 if hasattr(_cx, n))})

DEBUG_ENV = "MCBENCH_DEBUG"
EXIT_FAILURE, EXIT_INTERRUPTED = 1, 130  # usage errors keep click's 2

# errors whose message is written for the user: shown as they are
_USER_ERRORS: tuple[type[BaseException], ...] = (McbenchError, ValueError, UnknownMethodError, OSError,
                                               sqlite3.Error, _cx.ClickException)


def click_context() -> Any:
    """The click context of the command being run, or ``None`` outside one."""
    return _cx_globals.get_current_context(silent=True)


def debug_enabled(ctx: Any = None) -> bool:
    """``--debug`` was given (on the root command) or ``MCBENCH_DEBUG`` is set to a true value."""
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line: the first line, and how many more there were."""
    problems = getattr(exc, "problems", None)  # catalog.CatalogError: one "path:line: field: message" each
    text = "\n".join(problems) if isinstance(problems, list) and problems else str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    msg = lines[0]
    if len(lines) > 1:
        msg += f" (+{len(lines) - 1} more line{'s' if len(lines) > 2 else ''}; --debug shows all)"
    if isinstance(exc, sqlite3.Error):
        return f"SQLite: {msg}"
    if not isinstance(exc, _USER_ERRORS) and not isinstance(problems, list):
        return f"{type(exc).__name__}: {msg} (an unexpected error; --debug shows the traceback)"
    return msg


def report(exc: BaseException, ctx: Any, code: int) -> typer.Exit:
    """Print ``exc`` (after its traceback under --debug) and return the Exit to raise."""
    if debug_enabled(ctx):
        traceback.print_exception(exc)
    message = _usage(exc) if isinstance(exc, _cx.UsageError) else one_line(exc)
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _usage(exc: Any) -> str:
    where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    return exc.format_message().strip().replace("\n", " ") + where


class OneLineErrors(TyperGroup):
    """The root click group of ``mcbench``: every exception of every subcommand becomes one line."""

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001 - click's signature
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _PASS_THROUGH:
            raise
        except _cx.UsageError as exc:  # a bad global option
            raise report(exc, None, exc.exit_code) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except _cx.ClickException as exc:  # usage errors (exit 2) and other click errors
            raise report(exc, ctx, exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise report(exc if str(exc) else KeyboardInterrupt("interrupted"), ctx, EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - the point: no command ends in a traceback
            raise report(exc, ctx, EXIT_FAILURE) from None
