"""Kills training with SIGKILL at random moments and resumes it: how many resumes work, crash, or meet a half-written
checkpoint.

    python benchmarks/kill_resume.py --trials 20 | tee benchmarks/results/kill_resume.txt

Each trial starts `tests/_helpers/kill_train.py` (tiny ViT, SemScaleTrainer, a checkpoint at every step), kills it
at a uniformly random moment of its training (after "TRAIN BEGIN", within the duration of an uninterrupted run),
records whether a `checkpoint-N` folder is incomplete (`semscale_hf.training.checkpoints.checkpoint_problems`),
then runs it again with `resume_from_checkpoint=True` and compares the final weights with the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from semscale_hf.training.checkpoints import checkpoint_problems


SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "_helpers" / "kill_train.py"


def start(output: Path, mode: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(output), mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_for(process: subprocess.Popen, marker: str) -> float:
    for line in process.stdout:
        if line.startswith(marker):
            return time.perf_counter()
    raise RuntimeError(f"the training script ended before printing {marker!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_TRAIN_MAX_STEPS": str(args.max_steps),
           "KILL_TRAIN_SAVE_STEPS": "1"}  # fmt: skip
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="kill_resume_"))

    reference = root / "reference"
    process = start(reference, "full", env)
    begin = wait_for(process, "TRAIN BEGIN")
    duration = wait_for(process, "TRAIN END") - begin
    process.communicate()
    expected = json.loads(Path(f"{reference}.json").read_text())
    print(f"# kill_resume: {args.trials} SIGKILLs at random moments of a {duration:.1f} s training run "
          f"({args.max_steps} steps, a checkpoint every step)\n")  # fmt: skip
    print("| trial | killed after (s) | newest checkpoint | incomplete checkpoint left | resume | weights match |")
    print("|---:|---:|---|---|---|---|")
    totals = {"resumed": 0, "crashed": 0, "incomplete": 0, "match": 0, "final": 0}
    for trial in range(1, args.trials + 1):
        output = root / f"trial{trial}"
        process = start(output, "full", env)
        begin = wait_for(process, "TRAIN BEGIN")
        delay = rng.uniform(0.0, duration)
        time.sleep(max(0.0, delay - (time.perf_counter() - begin)))
        finished = process.poll() is not None
        if not finished:
            process.send_signal(signal.SIGKILL)
        process.communicate()
        checkpoints = sorted((int(p.name.split("-")[1]), p) for p in output.glob("checkpoint-*") if p.is_dir())
        newest = checkpoints[-1][1].name if checkpoints else "none"
        if checkpoints and checkpoints[-1][0] == args.max_steps:
            # transformers 5.24's Trainer runs one step more when it resumes from the final checkpoint: not compared
            totals["final"] += 1
            print(f"| {trial} | {delay:.2f} | {newest} | - | final checkpoint written, not resumed | - |")
            continue
        incomplete = [p.name for _, p in checkpoints if checkpoint_problems(str(p))]
        totals["incomplete"] += bool(incomplete)
        resumed = subprocess.run([sys.executable, str(SCRIPT), str(output), "resume" if checkpoints else "full"],
                                 env=env, capture_output=True, text=True)  # fmt: skip
        if resumed.returncode == 0:
            totals["resumed"] += 1
            result = json.loads(Path(f"{output}.json").read_text())
            match = result["global_step"] == expected["global_step"] and torch.allclose(
                torch.tensor(result["classifier"]), torch.tensor(expected["classifier"]), rtol=1e-4, atol=1e-4
            )
            totals["match"] += match
            outcome, matched = "ok", "yes" if match else "NO"
        else:
            totals["crashed"] += 1
            outcome, matched = "CRASHED: " + resumed.stderr.strip().splitlines()[-1][:80], "-"
        print(f"| {trial} | {delay:.2f} | {newest} | {', '.join(incomplete) or 'no'} | {outcome} | {matched} |")
    print(
        f"\n{args.trials} kills: {totals['resumed']} resumed ({totals['match']} with the uninterrupted run's "
        "weights), "
        f"{totals['crashed']} crashed, {totals['incomplete']} left an incomplete checkpoint-N folder, "
        f"{totals['final']} killed after the final checkpoint (not resumed)"
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
