"""``python -m datasync sql|inspect|export|import|build|serve ...``: see
:mod:`datasync.tools.cli`.

The command line is native tooling (``datasync/tools/``, left out of the wheel the
browser installs), so it is imported only when run: importing datasync never loads it.
"""
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``sys.exit(main(["inspect", "app.dsdb"]))``: run the command line; returns the
    exit status (2 with a one-line ``error: ...`` when this install has no tooling)."""
    try:
        from .tools.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.tools":
            raise
        print("error: this datasync is the browser build, without its command line "
              "(datasync/tools/); install datasync from its source checkout "
              "(pip install .) to run `python -m datasync`", file=sys.stderr)
        return 2
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
