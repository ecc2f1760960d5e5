"""Time and peak memory of `python -m parity noise` on a big image, each run a fresh process.

    python benchmarks/noise_big_image.py [--size 4000] [--repeat 3]

Builds, in a temporary folder, scikit-image's astronaut upscaled to SIZE x SIZE (RGB PNG), uniform
noise of that size, and the 512 px original; runs `python -m parity noise` on each, plus
`python -c "import torch"`, the floor every `parity noise` run pays (parity.noise computes in torch).
Prints, per input, the verdict line and the best of REPEAT runs: wall time, CPU time (user + sys)
and peak RSS (the child's own ru_maxrss, from os.wait4). Numbers are not asserted anywhere: on
shared cores they move with the load, printed beside them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(args: list[str]) -> tuple[float, float, float, str]:
    """(wall s, cpu s, peak RSS MiB, first stdout line) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, _, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, (output.strip().splitlines() or [""])[0]


def inputs(folder: Path, size: int) -> dict[str, Path]:
    import numpy as np
    import skimage.data
    from PIL import Image

    photo = Image.fromarray(skimage.data.astronaut())
    paths = {
        "photo 512 px": folder / "photo.png",
        f"photo {size} px": folder / "big.png",
        f"noise {size} px": folder / "noise.png",
    }
    photo.save(paths["photo 512 px"])
    photo.resize((size, size), Image.Resampling.BICUBIC).save(paths[f"photo {size} px"])
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(noise).save(paths[f"noise {size} px"])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/noise_big_image.py")
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parity-noise-bench-") as tmp:
        runs = {"import torch (the floor)": [sys.executable, "-c", "import torch"]}
        for name, path in inputs(Path(tmp), args.size).items():
            runs[f"parity noise, {name}"] = [sys.executable, "-m", "parity", "noise", str(path)]
        print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; best of {args.repeat} runs")
        print(f"{'':<32} {'wall s':>7} {'cpu s':>7} {'peak RSS MiB':>13}")
        for name, command in runs.items():
            results = [measure(command) for _ in range(args.repeat)]
            wall, cpu, rss = (min(r[i] for r in results) for i in range(3))
            print(f"{name:<32} {wall:7.2f} {cpu:7.2f} {rss:13.0f}  {results[-1][3]}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
