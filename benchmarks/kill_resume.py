"""Kills training with SIGKILL at random moments and resumes it: how many resumes work, crash, start from the wrong
checkpoint or meet a half-written one.

    python benchmarks/kill_resume.py --trials 20 | tee benchmarks/results/kill_resume.txt

Each trial starts `tests/_helpers/kill_train.py` (tiny ViT, SemScaleTrainer, a checkpoint at every step), kills it
at a uniformly random moment of its training (after "TRAIN BEGIN", within the duration of an uninterrupted run), and
looks at what the kill left: the newest complete checkpoint (`semscale_hf.training.checkpoints.checkpoint_problems`;
one marked complete in the staging folder, `checkpoint-N.ready`, counts, as `train()` puts it in place), incomplete
`checkpoint-N` folders,
and a staging folder (the kill landed inside a save). It then runs the script again with `resume_from_checkpoint=True`
and checks the step training started from (it must be the newest complete checkpoint's: training is deterministic, so
a resume that silently started from step 0 would end with the same weights) and every weight against the
uninterrupted run's (1e-4).

Outcomes: `ok` (started from the newest complete checkpoint, reached the final step, every weight matches),
`picked an incomplete checkpoint`, `started from step S` (another wrong start), `weights differ`, `CRASHED`, and
`overshot`: the kill came after the checkpoint of the final step, and transformers' `Trainer` (5.25, plain `Trainer`
alike) runs one step more when it resumes from the checkpoint of its final step, so the weights are not compared.
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
from safetensors.torch import load_file

from semscale_hf.training.checkpoints import STAGING_DIR, checkpoint_problems


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


def _steps(folder: Path) -> dict[int, Path]:
    return {int(p.name.split("-")[1]): p for p in folder.glob("checkpoint-*") if p.is_dir() and "." not in p.name}


def inspect(output: Path) -> dict:
    """What a kill left in `output`, before anything cleans it up."""
    published = _steps(output)
    incomplete = {step for step, path in published.items() if checkpoint_problems(str(path))}
    complete = set(published) - incomplete
    # train() puts a staged checkpoint marked complete in place when its checkpoint-N is missing or incomplete
    marked = {int(p.name[len("checkpoint-") : -len(".ready")]): p for p in (output / STAGING_DIR).glob("*.ready")}
    restorable = {step for step, path in marked.items() if step not in complete and not checkpoint_problems(str(path))}
    if not (output / STAGING_DIR).exists():
        inside_save = "no"
    else:
        inside_save = f"yes, checkpoint-{max(restorable)} complete" if restorable else "yes, half-written"
    return {
        "newest_complete": max(complete | restorable, default=None),
        "incomplete": sorted(incomplete),
        "inside_save": inside_save,
    }


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-4) for k in a)


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
    started = time.perf_counter()

    reference = root / "reference"
    process = start(reference, "full", env)
    begin = wait_for(process, "TRAIN BEGIN")
    duration = wait_for(process, "TRAIN END") - begin
    process.communicate()
    expected = load_file(f"{reference}.safetensors")
    import transformers

    command = f"benchmarks/kill_resume.py --trials {args.trials} --max-steps {args.max_steps} --seed {args.seed}"
    print(f"# kill_resume: {args.trials} SIGKILLs at random moments of a {duration:.1f} s training run "
          f"({args.max_steps} steps, a checkpoint every step)\n#   python {command}\n#   transformers "
          f"{transformers.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| trial | killed after (s) | newest complete checkpoint | killed inside a save | incomplete checkpoint-N "
          "| resumed from step | outcome |")  # fmt: skip
    print("|---:|---:|---|---|---|---:|---|")
    outcomes: dict[str, int] = {}
    inside_save = staged_complete = left_incomplete = 0
    for trial in range(1, args.trials + 1):
        output = root / f"trial{trial}"
        process = start(output, "full", env)
        begin = wait_for(process, "TRAIN BEGIN")
        delay = rng.uniform(0.0, duration)
        time.sleep(max(0.0, delay - (time.perf_counter() - begin)))
        process.send_signal(signal.SIGKILL)  # (a no-op if it has already finished)
        process.communicate()
        left = inspect(output)
        inside_save += left["inside_save"] != "no"
        staged_complete += "complete" in left["inside_save"]
        left_incomplete += bool(left["incomplete"])
        newest = left["newest_complete"]
        # without a complete checkpoint, start again (resume_from_checkpoint=True would refuse)
        resumed = subprocess.run([sys.executable, str(SCRIPT), str(output), "full" if newest is None else "resume"],
                                 env=env, capture_output=True, text=True)  # fmt: skip
        start_step = "-"
        if resumed.returncode != 0:
            outcome = "CRASHED: " + resumed.stderr.strip().splitlines()[-1][:80]
        else:
            result = json.loads(Path(f"{output}.json").read_text())
            start_step = result["start_step"]
            if start_step in left["incomplete"]:
                outcome = "picked an incomplete checkpoint"
            elif start_step != (newest or 0):
                outcome = f"started from step {start_step}"
            elif newest == args.max_steps:
                outcome = f"overshot (ran to step {result['global_step']})"
            elif result["global_step"] == args.max_steps and same_weights(
                load_file(f"{output}.safetensors"), expected
            ):
                outcome = "ok"
            else:
                outcome = "weights differ"
        key = outcome.split(":")[0].split(" (")[0]
        outcomes[key] = outcomes.get(key, 0) + 1
        incomplete = ", ".join(f"checkpoint-{s}" for s in left["incomplete"]) or "none"
        print(f"| {trial} | {delay:.2f} | {'none' if newest is None else f'checkpoint-{newest}'} | "
              f"{left['inside_save']} | {incomplete} | {start_step} | {outcome} |")  # fmt: skip
    order = ["ok", "overshot", "picked an incomplete checkpoint", "weights differ", "CRASHED"]
    counts = ", ".join(f"{outcomes.get(k, 0)} {k}" for k in order)
    others = ", ".join(f"{n} {k}" for k, n in outcomes.items() if k not in order)
    print(
        f"\n{args.trials} kills: {counts}{', ' + others if others else ''}; {inside_save} landed inside a save "
        f"(a staging folder was left; in {staged_complete} of them the staged checkpoint was marked complete, its "
        f"rename not done, and the resume put it in place), {left_incomplete} left an incomplete checkpoint-N folder. "
        f"Wall time {time.perf_counter() - started:.0f} s."
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
