"""The first screen of a run's report.html as a reader sees it: a screenshot in headless
Chromium (Debian's `chromium`; `apt-get install chromium`), for the record of what the
first screen shows (a check, not a test).

    .venv/bin/python benchmarks/screenshot_report.py RUN_DIR [--out PNG] [--size 1400,1000]

The page is self-contained (no script, no external resource: tests/unit/test_claims.py),
so Chromium opens it as a file with networking off.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "report-first-screen.png"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--size", default="1400,1000", help="window WIDTH,HEIGHT in pixels")
    args = p.parse_args()
    page = (args.run_dir / "report.html").resolve()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not page.is_file():
        print(f"{page}: no report.html (run `make report RUN_DIR={args.run_dir}`)",
              file=sys.stderr)
        return 2
    if browser is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mb-chromium-") as profile:
        subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}",
                        f"--window-size={args.size}", f"--screenshot={args.out.resolve()}",
                        page.as_uri()], check=True, timeout=120, capture_output=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
