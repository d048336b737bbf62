"""Regenerates `model_cards/example_digits_vit.md` and its plot: a real (tiny) SemScaleTrainer run, offline, on CPU.

A ViT from a small config (random init) is trained on scikit-learn's digits with a long-tailed train split
(imbalance factor 10) and evaluated on the balanced test split; the card is rendered from the template exactly as
`SemScaleTrainer.push_to_hub()` renders it, except that the image gets a name of its own.

    python model_cards/make_example_card.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForImageClassification, ViTConfig

from semscale_hf import SemScaleTrainer, SemScaleTrainingArguments
from semscale_hf.data import load_long_tailed_digits, make_image_transform
from semscale_hf.hub import card_data_from_trainer


HERE = Path(__file__).resolve().parent
CARD = HERE / "example_digits_vit.md"
PLOT = HERE / "example_digits_vit.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as output_dir:
        _run(output_dir)


def _run(output_dir: str) -> None:
    splits = load_long_tailed_digits(imbalance_factor=10.0, seed=0)
    transform = make_image_transform(8, num_channels=1)
    train, test = splits["train"].with_transform(transform), splits["test"].with_transform(transform)
    names = splits["train"].features["label"].names
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    model = AutoModelForImageClassification.from_config(config)
    args = SemScaleTrainingArguments(
        output_dir=output_dir,
        hub_model_id="your-username/vit-tiny-digits-lt",
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        learning_rate=5e-3,
        num_train_epochs=20,
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=20,
        disable_tqdm=True,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=True,
        seed=0,
        semscale_warmup_epochs=2,
    )
    trainer = SemScaleTrainer(model=model, args=args, train_dataset=train, eval_dataset=test)
    trainer.train()
    report = card_data_from_trainer(
        trainer,
        dataset_tags="digits-lt",
        dataset="scikit-learn digits, long-tailed train split (imbalance factor 10), balanced test split",
        license="apache-2.0",
    )
    report.save_plot(PLOT)
    report.render(plot_file=PLOT.name).save(CARD)
    print(f"wrote {CARD} and {PLOT}")


if __name__ == "__main__":
    main()
