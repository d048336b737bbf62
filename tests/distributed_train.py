"""Trains a tiny ViT with SemScaleTrainer and writes the final state as JSON; run with torchrun or plain python.

Usage: python tests/distributed_train.py OUTPUT_JSON PER_DEVICE_BATCH
"""

import json
import os
import sys
import tempfile

import torch


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trainer_utils import digits_dataset, losses, make_args, tiny_vit  # noqa: E402

from semscale_hf import SemScaleTrainer  # noqa: E402


def main() -> None:
    output, batch = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as directory:
        args = make_args(
            directory,
            per_device_train_batch_size=batch,
            learning_rate=1e-3,
            num_train_epochs=2,
            ddp_find_unused_parameters=False,
            train_sampling_strategy="sequential",
        )
        trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(counts=[16, 10, 6, 4]))
        trainer.train()
        accelerator = trainer.accelerator
        # every rank must hold the same weights: gather them and compare
        gathered = accelerator.gather(trainer.class_weights.to(accelerator.device)[None])
        identical = all(torch.equal(gathered[0], row) for row in gathered)
        if trainer.is_world_process_zero():
            state = {
                "world_size": accelerator.num_processes,
                "identical_across_ranks": identical,
                "class_weights": trainer.class_weights.tolist(),
                "semantic_scales": trainer.semantic_scales.tolist(),
                "pool_counts": trainer.balancer.pool.counts.tolist(),
                "refreshes": trainer.balancer.num_refreshes,
                "losses": losses(trainer),
                "classifier": trainer.model.classifier.weight.flatten().tolist(),
            }
            with open(output, "w") as handle:
                json.dump(state, handle)
        trainer.end()  # destroys the process group: avoids a flaky abort at exit


if __name__ == "__main__":
    main()
