"""What `conveyor run DIR` builds: the working tree as it is, or exactly HEAD (`--commit`).

The working tree is used in place (the backend copies it into the build's workspace), uncommitted
and untracked files included: that is what someone iterating on a pipeline wants. ``--commit``
exports HEAD with ``git archive`` into a temporary directory, so local edits cannot leak in.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from runner.errors import SourceError

__all__ = ["repo_root", "export_head", "check_data_dir"]


def repo_root(path: Path) -> Path | None:
    """The top of the git working tree holding ``path``, or None outside git."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, check=False)
    except FileNotFoundError:
        return None
    return Path(out.stdout.strip()).resolve() if out.returncode == 0 and out.stdout.strip() else None


def export_head(root: Path) -> tempfile.TemporaryDirectory:
    """HEAD of the repository at ``root``, extracted into a new temporary directory (the caller
    cleans it up)."""
    proc = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", "HEAD"], capture_output=True)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SourceError(
            f"cannot export HEAD of {root} ({detail[-1] if detail else 'git archive failed'}); "
            "commit something first, or drop --commit to run the working tree"
        )
    tmp = tempfile.TemporaryDirectory(prefix="conveyor-src-")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(tmp.name, filter="data")
    return tmp


def check_data_dir(data_dir: Path, repo: Path) -> None:
    """Refuse a data directory inside the repository: the store would be copied into every build's
    workspace, and `.conveyor/` holds pipeline files."""
    data, top = data_dir.resolve(), repo.resolve()
    if data == top or top in data.parents:
        where = "its .conveyor/ folder, which holds pipeline files" if (top / ".conveyor") in (data, *data.parents) \
            else "the repository"
        raise SourceError(
            f"the data directory {data} is inside {where}; pass --data-dir (or set CONVEYOR_DATA_DIR) to a "
            "place outside the repository, e.g. ~/.local/share/conveyor"
        )
