"""Trains a tiny ViT and writes the final semantic-scale state as JSON; run with torchrun or plain python.

Usage: python tests/distributed_train.py OUTPUT_JSON PER_DEVICE_BATCH MODE

MODE: [trainer|callback][-uneven|-token|-multilabel|-best].

`trainer` (default) trains with SemScaleTrainer; `callback` trains with a plain Trainer and a measure-only
SemScaleCallback. `-uneven` trains on 39 samples with 2 accumulation steps, so that the last micro-batch of an epoch
is not full (with several processes, accelerate's `even_batches` fills it with repeated samples). `-token` trains
the tiny tagger of `token_data.py` (sentences of different lengths: every rank pads to its own longest);
`-multilabel` the ViT with multi-hot labels; `-best` saves and evaluates every epoch, in one folder that all ranks
share, and loads the best checkpoint at the end.
"""

import json
import os
import sys
import tempfile

import torch
from transformers import Trainer


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
from _helpers.token_data import collate, tiny_tagger, token_dataset  # noqa: E402
from _helpers.trainer_utils import (  # noqa: E402
    digits_dataset,
    losses,
    make_args,
    multi_hot_digits,
    multi_label_vit,
    tiny_vit,
)
from semscale_hf import SemScaleCallback, SemScaleTrainer  # noqa: E402


COUNTS = {False: [16, 10, 6, 4], True: [16, 10, 6, 7]}  # by `uneven`


def main() -> None:
    output, batch = sys.argv[1], int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "trainer"
    uneven, token, multi_label = mode.endswith("-uneven"), mode.endswith("-token"), mode.endswith("-multilabel")
    best = mode.endswith("-best")
    with tempfile.TemporaryDirectory() as directory:
        if best:  # checkpoints each epoch in one folder of all ranks (the working directory); each loads the best
            epochs = {"eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True}
            directory = os.path.join(os.getcwd(), "best-run")
        args = make_args(
            directory,
            per_device_train_batch_size=batch,
            learning_rate=1e-3,
            num_train_epochs=2,
            ddp_find_unused_parameters=False,
            train_sampling_strategy="sequential",
            gradient_accumulation_steps=2 if uneven else 1,
            remove_unused_columns=not token,
            **(epochs if best else {}),
        )
        dataset = token_dataset(num_sentences=32) if token else digits_dataset(counts=COUNTS[uneven])
        model, extra = (tiny_tagger(), {"data_collator": collate}) if token else (tiny_vit(), {})
        if multi_label:
            dataset, model = multi_hot_digits(COUNTS[False]), multi_label_vit()
        if best:
            extra["eval_dataset"] = dataset
        if mode.startswith("trainer"):
            trainer = SemScaleTrainer(model=model, args=args, train_dataset=dataset, **extra)
        else:
            trainer = Trainer(model=model, args=args, train_dataset=dataset, **extra)
            callback = SemScaleCallback.attach(trainer, warmup_steps=2, refresh_steps=3)
        trainer.train()
        balancer = trainer.balancer if mode.startswith("trainer") else callback.balancer
        accelerator = trainer.accelerator
        # every rank must hold the same weights and pool: gather them and compare
        pool = balancer.pool.features_and_labels()[0].flatten().to(torch.float64)
        classifier = trainer.model.classifier.weight.detach().flatten().to(torch.float64)
        scales = balancer.semantic_scales.nan_to_num(-1.0)
        state_per_rank = torch.cat([balancer.class_weights, scales, pool, classifier])
        gathered = accelerator.gather(state_per_rank.to(accelerator.device)[None])
        identical = all(torch.equal(gathered[0], row) for row in gathered)
        # where each rank found the best checkpoint: 1 when it is a complete folder of the run, outside the staging one
        found = trainer.state.best_model_checkpoint
        best_found = found is not None and "_semscale-staging" not in found and os.path.isdir(found)
        best_found_on = accelerator.gather(torch.tensor([float(best_found)], device=accelerator.device)).tolist()
        if trainer.is_world_process_zero():
            state = {
                "world_size": accelerator.num_processes,
                "identical_across_ranks": identical,
                "best_found_on_ranks": best_found_on,
                "class_weights": balancer.class_weights.tolist(),
                "semantic_scales": balancer.semantic_scales.tolist(),
                "pool_counts": balancer.pool.counts.tolist(),
                "num_seen": balancer.pool.num_seen.tolist(),
                "refreshes": balancer.num_refreshes,
                "losses": losses(trainer),
                "classifier": trainer.model.classifier.weight.flatten().tolist(),
            }
            with open(output, "w") as handle:
                json.dump(state, handle)
        trainer.end()  # destroys the process group (see below for what it does not cover)


if __name__ == "__main__":
    main()
    # Leave without the interpreter's teardown. Even after `trainer.end()` destroyed the process group, gloo's
    # native threads can still abort a rank at exit ("terminate called without an active exception", SIGABRT; seen
    # once in CI after every result was written), which would fail the test for a teardown fault of torch's, not a
    # result of ours. Any error before this line still exits non-zero.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
