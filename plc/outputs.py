"""A command's output files: checked before the work, written all or nothing after it.

:func:`check_outputs` refuses, before anything is computed, an output that is
one of the inputs (also through a link), two outputs that are one file, an
output that is a folder, and a folder that does not exist or cannot be written
to. :class:`StagedOutputs` writes every output to a temporary file next to it
and renames them all onto the outputs only when everything was written, so a
failure leaves the files that were there before untouched and no half-written
ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Optional

from .errors import UserError

PathLike = str | os.PathLike


def check_outputs(outputs: Mapping[str, Optional[PathLike]], inputs: Iterable[Optional[PathLike]] = ()) -> None:
    """Raise :class:`UserError` unless each output (``{label: path}``; None = not asked for) can be written.

    ``label`` names the output in the message (``OUTPUT``, ``--stats``). Nothing is created.
    """
    inputs = [Path(p) for p in inputs if p is not None]
    seen: dict[Path, str] = {}
    for label, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        where = f"{label} {path}" if label != str(path) else str(path)
        if path.is_dir():
            raise UserError(f"{where}: is a folder, not a file")
        for source in inputs:
            if _same_file(path, source):
                raise UserError(f"{where}: is the input {source}; write the output to another file")
        key = path.resolve()
        if key in seen:
            raise UserError(f"{where}: is also {seen[key]}; give each output its own file")
        seen[key] = where
        if path.exists() and not os.access(path, os.W_OK):
            raise UserError(f"{where}: the file is read-only")
        check_writable_folder(path.parent if str(path.parent) else Path("."), where)


def check_output_folder(label: str, path: PathLike) -> Path:
    """``path`` as a Path if it is, or can be made, a folder to write into; else :class:`UserError`.

    The folder is not created: the deepest existing folder on the way must be writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{label} {path}: exists and is not a folder")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    check_writable_folder(existing, f"{label} {path}")
    return path


def check_writable_folder(folder: Path, where: str) -> None:
    """Raise :class:`UserError` unless a file can be created in ``folder`` (tried, then removed)."""
    if not folder.exists():
        raise UserError(f"{where}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{where}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".plc-probe-", dir=folder)
    except OSError as exc:
        raise UserError(f"{where}: cannot write to folder {folder} ({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


class StagedOutputs:
    """Temporary files next to the outputs, renamed onto them only if the ``with`` block succeeds.

    ::

        with StagedOutputs() as staged:
            write_audio(staged.path(output), ...)
            staged.path(stats).write_text(...)

    :meth:`path` gives the temporary file for an output (in the output's folder, with its
    suffix, so writers that go by the extension work). On success every output is renamed
    into place (``os.replace``, atomic per file); on an exception the temporary files are
    removed and the outputs are as they were.
    """

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}

    def path(self, output: PathLike) -> Path:
        output = Path(output)
        if output in self._staged:
            return self._staged[output]
        folder = output.parent if str(output.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=output.suffix, dir=folder)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the output is an ordinary file
        self._staged[output] = Path(tmp)
        return Path(tmp)

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for output, tmp in list(self._staged.items()):
                    os.replace(tmp, output)
                    del self._staged[output]
        finally:
            for tmp in self._staged.values():
                tmp.unlink(missing_ok=True)
            self._staged.clear()
