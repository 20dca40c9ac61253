"""How the command line looks and fails, apart from what its commands do: `--help` with
examples and without type noise, and every error as one line that names what the user typed."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from synth.errors import SynthError

err_console = Console(stderr=True)


def error_line(message: object) -> None:
    """One line at any terminal width; brackets in the message are text, not markup."""
    text = " ".join(str(message).split())  # a stray newline would break the one line too
    err_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)


def examples(*lines: str) -> str:
    """A command's `--help` epilog: example command lines, one a line."""
    return "Examples:\n" + "\n".join(f"  {escape(line)}" for line in lines)


def _flags_without_type(params: list[Any]) -> list[Any]:
    """A flag takes no value, so its `--help` line shows no `<bool>` type."""
    for param in params:
        if getattr(param, "is_bool_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A command whose `--help` shows no `<bool>` on its flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class Group(TyperGroup):
    """The `synth` group. A usage error (an unknown option, a missing or malformed value) is
    one `error:` line too, like every other error, instead of a boxed panel that wraps on a
    narrow terminal; the exit code stays click's (2)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        with _usage_error_line():  # the group's own options: `synth --bogus`
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _usage_error_line():  # an unknown command, and each command's own options
            return super().invoke(ctx)


@contextlib.contextmanager
def _usage_error_line() -> Iterator[None]:
    try:
        yield
    except typer.TyperException as err:  # click's usage errors
        if type(err).__name__ == "NoArgsIsHelpError":  # `synth` alone: typer prints the help
            raise
        ctx = getattr(err, "ctx", None)
        hint = f" (try '{ctx.command_path} --help')" if ctx is not None else ""
        error_line(f"{err.format_message()}{hint}")
        raise typer.Exit(getattr(err, "exit_code", 2)) from None


@contextlib.contextmanager
def naming_flags(flags: dict[str, str], keep_field: bool = True) -> Iterator[None]:
    """A `SynthError` raised inside names the flag the user typed wherever it names the field
    that flag set: `flags` maps a field to its flag (`{"source.path": "--data"}`), and
    `check source.path` reads `check --data (source.path)` (`check --data` without
    `keep_field`, where the field means nothing to the user). A dotted field is matched
    anywhere; a bare one (a request's `rows`) only where it starts a `field: ...` clause."""
    try:
        yield
    except SynthError as err:
        if flags and err.args and isinstance(err.args[0], str):
            err.args = (_with_flags(err.args[0], flags, keep_field), *err.args[1:])
        raise


def _with_flags(message: str, flags: dict[str, str], keep_field: bool) -> str:
    for field, flag in flags.items():
        name = re.escape(field)
        if "." in field:
            pattern = rf"(?<![\w.]){name}(?!\w|\.\w)"
        else:
            pattern = rf"(?:^|(?<=: )|(?<=; )){name}(?=:)"
        with_flag = f"{flag} ({field})" if keep_field else flag
        message = re.sub(pattern, with_flag, message)  # flags and fields hold no backslash
    return message


def flags_given(fields: dict[str, tuple[str | tuple[str, ...], Any]]) -> dict[str, str]:
    """`{flag: (field or fields, value)}` -> `{field: flag}` for the flags given a value."""
    named: dict[str, str] = {}
    for flag, (field, value) in fields.items():
        if value is not None:
            named.update(dict.fromkeys((field,) if isinstance(field, str) else field, flag))
    return named
