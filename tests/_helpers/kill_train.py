"""A training run that dies inside a checkpoint save, for the fault-injection tests and benchmarks/kill_resume.py.

    python kill_train.py OUTPUT_DIR full                # 8 steps, a checkpoint every 2, results in OUTPUT_DIR.json
                                                        # (and every weight in OUTPUT_DIR.safetensors)
    python kill_train.py OUTPUT_DIR kill:POINT          # os._exit(1) at POINT of the second save (step 4)
    python kill_train.py OUTPUT_DIR resume              # resume_from_checkpoint=True, then as `full`

KILL_TRAIN_MAX_STEPS and KILL_TRAIN_SAVE_STEPS (defaults 8 and 2) change the schedule.

POINT: `model` (half of model.safetensors written), `optimizer` (the model is saved, the optimizer not),
`semscale` (half of semscale_state.safetensors written), `trainer_state` (half of trainer_state.json written).
"""

from __future__ import annotations

import json
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
from _helpers.trainer_utils import digits_dataset, make_args, tiny_vit  # noqa: E402


KILL_AT_SAVE = 2


def _half_write_then_die(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.fsync(handle.fileno())
    os._exit(1)


def _arm(point: str, trainer) -> None:
    """Makes the KILL_AT_SAVE-th checkpoint save die at `point`."""
    import transformers.modeling_utils as modeling_utils
    from safetensors.torch import save as safetensors_bytes
    from transformers import Trainer, TrainerState

    from semscale_hf.core.balancer import SemScaleBalancer

    saves = {"n": 0}
    original_checkpoint = type(trainer)._save_checkpoint

    def counting(self, *args, **kwargs):
        saves["n"] += 1
        return original_checkpoint(self, *args, **kwargs)

    type(trainer)._save_checkpoint = counting
    armed = lambda: saves["n"] == KILL_AT_SAVE  # noqa: E731

    if point == "model":
        original = modeling_utils.safe_save_file

        def save_file(tensors, filename, metadata=None):
            if not armed():
                return original(tensors, filename, metadata=metadata)
            _half_write_then_die(filename, safetensors_bytes(tensors, metadata=metadata))

        modeling_utils.safe_save_file = save_file
    elif point == "optimizer":
        original_optimizer = Trainer._save_optimizer_and_scheduler

        def save_optimizer(self, output_dir):
            if armed():
                os._exit(1)
            return original_optimizer(self, output_dir)

        Trainer._save_optimizer_and_scheduler = save_optimizer
    elif point == "semscale":
        original_save = SemScaleBalancer.save

        def save(self, directory, *, include_pool):
            if not armed():
                return original_save(self, directory, include_pool=include_pool)
            tensors, metadata = self.state_dict()
            _half_write_then_die(os.path.join(directory, "semscale_state.safetensors"),
                                 safetensors_bytes(tensors, metadata=metadata))  # fmt: skip

        SemScaleBalancer.save = save
    elif point == "trainer_state":
        original_json = TrainerState.save_to_json

        def save_to_json(self, json_path):
            if not armed():
                return original_json(self, json_path)
            text = json.dumps({"global_step": self.global_step, "log_history": self.log_history}, indent=2)
            _half_write_then_die(json_path, text.encode())

        TrainerState.save_to_json = save_to_json
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def _announce():
    """A callback that prints when training starts (benchmarks/kill_resume.py kills at a random moment after it) and
    keeps the step it started from: a resume that silently started from step 0 would end with the same weights."""
    from transformers import TrainerCallback

    class Announce(TrainerCallback):
        start_step = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.start_step = state.global_step  # the resumed checkpoint's step (Trainer has loaded its state)
            print(f"TRAIN BEGIN at step {state.global_step}", flush=True)

        def on_train_end(self, args, state, control, **kwargs):
            print("TRAIN END", flush=True)

    return Announce()


def main(output_dir: str, mode: str) -> None:
    from semscale_hf import SemScaleTrainer

    max_steps = int(os.environ.get("KILL_TRAIN_MAX_STEPS", 8))
    save_steps = int(os.environ.get("KILL_TRAIN_SAVE_STEPS", 2))
    args = make_args(output_dir, max_steps=max_steps, save_strategy="steps", save_steps=save_steps, logging_steps=1)
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(counts=[16, 10, 6, 4]))
    announce = _announce()
    trainer.add_callback(announce)
    if mode.startswith("kill:"):
        _arm(mode.removeprefix("kill:"), trainer)
    trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, f"{output_dir}.safetensors")
    result = {
        "start_step": announce.start_step,
        "global_step": trainer.state.global_step,
        "class_weights": trainer.class_weights.tolist(),
    }
    with open(f"{output_dir}.json", "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
