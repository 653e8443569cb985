"""`make mutation`: mutmut over the decoding core (pyproject.toml's [tool.mutmut]), then one
line with the score. Survivors are listed by `mutmut results`; each one is either killed by a
test that checks behaviour or explained as equivalent in docs/mutation.md.

    python scripts/mutation.py [--max-children N]

The last line printed is exactly ``mutation score: NN.N% (K killed of N mutants)``, where N
counts every mutant mutmut made (a mutant no test reaches counts as not killed; one that
times out counts as killed: the tests noticed it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = Path(sys.executable).parent / "mutmut"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args()
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # a stale copy would be reused
    start = time.monotonic()
    subprocess.run([str(MUTMUT), "run", "--max-children", str(args.max_children)], cwd=ROOT,
                   check=True)
    subprocess.run([str(MUTMUT), "export-cicd-stats"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
    killed = stats["killed"] + stats["timeout"]
    total = stats["total"]
    print(f"{json.dumps(stats)}; {time.monotonic() - start:.0f} s")
    print(f"mutation score: {100 * killed / max(total, 1):.1f}% ({killed} killed of {total} "
          "mutants)")


if __name__ == "__main__":
    main()
