"""`nnchip verify DIR`: replay an export's golden vectors through the pure-numpy reader.

Prints matched/total elements per tensor; exits 1 on any mismatch, 2 on a corrupt or altered export.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nnchip.export.reader import ExportError, verify


def _run(args: argparse.Namespace) -> int:
    try:
        report = verify(args.directory)
    except ExportError as exc:
        print(f"nnchip verify: error: {exc}", file=sys.stderr)
        return 2
    mismatched = 0
    for name, (matched, total) in report.items():
        flag = "" if matched == total else "   MISMATCH"
        mismatched += matched != total
        print(f"{name:<40} {matched:>10}/{total:<10}{flag}")
    print(f"{len(report) - mismatched} of {len(report)} tensors bit-exact")
    return 1 if mismatched else 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("verify", help="check an export against its golden vectors (numpy only)")
    parser.add_argument("directory", metavar="DIR")
    parser.set_defaults(func=_run)
