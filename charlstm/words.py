"""How charlstm says things: counts with the right plural, and command lines
that a shell runs as printed (quoted where they need it)."""
from __future__ import annotations


def plural(n, word: str, many: str | None = None) -> str:
    """A count and its noun, the noun singular only for exactly one: "1 minute",
    "0.5 minutes", "2,000 positions". Whole numbers get thousands commas."""
    x = float(n)
    num = f"{int(x):,}" if x.is_integer() else f"{x:g}"
    return f"{num} {word if x == 1 else (many or word + 's')}"


def shell_line(args) -> str:
    """A command line that a shell runs as exactly these arguments (each
    quoted where it needs it), so that a printed command can be pasted."""
    import shlex
    return " ".join(shlex.quote(str(a)) for a in args)


def path_arg(path: str) -> str:
    """A path as a command line's argument: one that starts with '-' would be
    read as an option, so it is written ./-name."""
    return "./" + path if path.startswith("-") else path
