"""The one error type a user sees, and how to install what is missing."""
from __future__ import annotations


class CharlstmError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits 1."""


def install_hint(extra: str) -> str:
    """The command that installs an optional extra (export, tune, plot) for
    this installation of charlstm: editable from a checkout, from a local
    folder, or from the package index; with this Python's own pip."""
    import json
    import os
    import shlex
    import sys
    from importlib import metadata
    where = None
    editable = False
    try:
        raw = next((d.read_text("direct_url.json") for d in metadata.distributions(name="charlstm")
                    if d.read_text("direct_url.json")), None)
        info = json.loads(raw) if raw else {}
        url = info.get("url", "")
        editable = bool(info.get("dir_info", {}).get("editable"))
        if url.startswith("file://") and os.path.isdir(url[7:]):
            where = url[7:]
    except (metadata.PackageNotFoundError, ValueError, OSError, AttributeError):
        pass
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    if where is None:
        return f"{pip} 'charlstm[{extra}]'"
    target = shlex.quote(f"{where}[{extra}]")
    return f"{pip} -e {target}" if editable else f"{pip} {target}"
