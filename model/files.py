"""Files written whole or not at all, for everything relight leaves on disk: weight files, training's
checkpoints and renders, and the relight command's answers."""

import os
from collections.abc import Callable
from pathlib import Path


def write_whole(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(partial) on a hidden name beside `path` (.NAME.partial, in the same folder so that the rename
    stays on one file system and is atomic, os.replace), then rename it to `path`: a killed run or a full disk
    never leaves half a file under the real name, where a resumed run would take it for done. The folder must
    exist. Raises what `write` raises (OSError for a full disk), after removing the partial file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
