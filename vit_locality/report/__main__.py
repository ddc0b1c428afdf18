"""`python -m vit_locality.report RUN_DIR... --out=DIR` (see the package docstring)."""

from __future__ import annotations

import sys

from vit_locality.cli import ArgumentParser, fail
from vit_locality.errors import UserError
from vit_locality.report import write_report


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python -m vit_locality.report", allow_abbrev=False)
    parser.add_argument("run_dirs", nargs="+", help="run workdirs or directories of them")
    parser.add_argument("--out", required=True, help="where report.md and the figures go")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.run_dirs, args.out)
    except UserError as e:
        fail(e)
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
