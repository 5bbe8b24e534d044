"""Freeze shipped models into their portable form: ``python -m ardm.portable.ship mnist ...``.

Writes ``src/ardm/weights/portable/<name>.safetensors`` for each name (by default every
shipped model whose network and head have an integer form), calibrated on the model's
training split (:func:`ardm.training.pretrained.export_portable`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ardm.errors import ArdmError


def main(argv: Sequence[str] | None = None) -> int:
    """Freeze the named shipped models; prints one line per file written."""
    from ardm.portable.model import PortablePending
    from ardm.training.pretrained import export_portable, shipped_names, shipped_path

    ap = argparse.ArgumentParser(prog="python -m ardm.portable.ship", description=__doc__)
    ap.add_argument("names", nargs="*", help="shipped model names (default: all that can)")
    ap.add_argument("--calib", type=int, default=64, help="training items to calibrate on")
    args = ap.parse_args(argv)
    names = args.names or shipped_names()
    for name in names:
        try:
            path = export_portable(shipped_path(name), items=args.calib)
        except PortablePending as e:
            if args.names:
                raise
            print(f"{name}: skipped ({e})")
            continue
        except ArdmError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 1
        print(f"{name}: wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
