"""Two trainings sharing the cores: samples/s of each against one alone, per wait policy.

    python -m bench.sharing                    # 4 epochs of the default preset, synthetic set
    python -m bench.sharing --epochs 6 --data DIR

Each policy runs one `islr.py train` alone, then two at once (the second started 2 s after
the first, as a person starting a second run would), and prints the median samples/s of the
epochs after the first of each. Policies: "islr" (OMP_WAIT_POLICY unset: islr.py chooses),
"passive" (OMP_WAIT_POLICY=PASSIVE for both) and "spin" (OMP_WAIT_POLICY=ACTIVE for both).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = {"islr": None, "passive": "PASSIVE", "spin": "ACTIVE"}
EPOCH = re.compile(r"^epoch +(\d+) .* ([\d,]+) samples/s", re.M)


def start(out: Path, epochs: int, data: str | None, policy: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, "islr.py", "train", "--epochs", str(epochs), "--out", str(out)]
    command += ["--data", data] if data else []
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def samples_per_second(process: subprocess.Popen) -> float:
    """The median samples/s of a finished run's epochs after the first (start-up excluded)."""
    output = process.communicate()[0]
    rates = [float(rate.replace(",", "")) for epoch, rate in EPOCH.findall(output) if epoch != "1"]
    if process.returncode or not rates:
        sys.exit(f"a training failed:\n{output[-2000:]}")
    return statistics.median(rates)


def measure(policy: str | None, epochs: int, data: str | None, folder: Path) -> tuple:
    """(alone, first of two, second of two) samples/s."""
    alone = samples_per_second(start(folder / "alone", epochs, data, policy))
    first = start(folder / "first", epochs, data, policy)
    time.sleep(2)
    second = start(folder / "second", epochs, data, policy)
    return alone, samples_per_second(first), samples_per_second(second)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--data", help="dataset directory (default: the synthetic set)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    print(f"{'policy':8} {'alone':>7} {'first':>7} {'second':>7}   each / alone")
    for name, policy in POLICIES.items():
        with tempfile.TemporaryDirectory() as folder:
            alone, first, second = measure(policy, args.epochs, args.data, Path(folder))
        print(
            f"{name:8} {alone:7,.0f} {first:7,.0f} {second:7,.0f}   "
            f"{first / alone:.2f}, {second / alone:.2f}"
        )


if __name__ == "__main__":
    main()
