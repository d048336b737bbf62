# /// script
# requires-python = ">=3.10"
# dependencies = ["semscale-hf", "seqeval"]
# ///
"""Token classification (NER) with `SemScaleTrainer`: a tiny BERT tagger on a synthetic long-tailed tag set.

The default data needs no download: seeded sentences whose tags follow a long tail over the 9 CoNLL-2003 tags ("O"
on most tokens, then PER, ORG, LOC, MISC with geometrically fewer), each tag drawing its token ids from its own part
of the vocabulary with some overlap, plus the -100 positions of a real tokenizer ([CLS], [SEP], sub-word
continuations, padding). The same tagger is trained with plain cross-entropy for comparison, and the script prints
the per-tag table (training tokens, semantic scale, weight, token accuracy) and the token / entity scores.

    python examples/token_classification.py --output_dir outputs/tagger

With Hub access, `--dataset conll2003 --tokenizer_name bert-base-cased` trains on CoNLL-2003 instead (the code path
of the transformers token-classification example: words tokenised, the tag on the first sub-word, -100 on the rest);
that path is not run in the tests. Every `SemScaleTrainingArguments` field is a flag.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from common import markdown_table
from datasets import Dataset, DatasetDict
from transformers import AutoModelForTokenClassification, BertConfig, HfArgumentParser

from semscale_hf import SemScaleTrainer, SemScaleTrainingArguments


CONLL_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

TRAINING_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/tagger",
    "num_train_epochs": 12,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "cosine",
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_steps": 50,
    "report_to": "none",
    "remove_unused_columns": False,
    "use_cpu": not torch.cuda.is_available(),
    "semscale_warmup_epochs": 4,
}


@dataclass
class TaggerArguments:
    """Data and model of the tagger."""

    dataset: str = field(default="synthetic", metadata={"help": "'synthetic' or 'conll2003' (needs the Hub)."})
    num_sentences: int = field(default=800, metadata={"help": "Synthetic training sentences (test: a quarter)."})
    tail_ratio: float = field(default=0.5, metadata={"help": "Synthetic: share of each entity type over the last."})
    sentence_seed: int = field(default=0, metadata={"help": "Seed of the synthetic sentences."})
    tokenizer_name: str = field(default="bert-base-cased", metadata={"help": "conll2003 only: the tokenizer."})
    hidden_size: int = field(default=64, metadata={"help": "BERT hidden size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "BERT depth."})
    compare_baseline: bool = field(default=True, metadata={"help": "Also train with plain cross-entropy."})


def tag_shares(tail_ratio: float) -> np.ndarray:
    """ "O" on 80% of the tokens; PER, ORG, LOC, MISC get geometrically less, B- 60% and I- 40% of their type."""
    types = tail_ratio ** np.arange(4)
    types = 0.2 * types / types.sum()
    return np.concatenate([[0.8], np.stack([0.6 * types, 0.4 * types], axis=1).reshape(-1)])


def synthetic_splits(tagger: TaggerArguments, vocab_size: int = 512) -> DatasetDict:
    """Seeded sentences of 6 to 24 tokens with long-tailed tags; -100 where a tokenizer puts special or sub-words."""
    rng = np.random.default_rng(tagger.sentence_seed)
    shares = tag_shares(tagger.tail_ratio)
    block = (vocab_size - 10) // len(CONLL_TAGS)

    def sentences(count: int) -> Dataset:
        rows: dict[str, list] = {"input_ids": [], "labels": []}
        for _ in range(count):
            length = int(rng.integers(6, 25))
            tags = rng.choice(len(CONLL_TAGS), size=length, p=shares)
            # a tag's tokens come from its block; one in five is drawn from anywhere (ambiguous words)
            ids = 10 + tags * block + rng.integers(0, block, size=length)
            noisy = rng.random(length) < 0.2
            ids[noisy] = rng.integers(10, vocab_size, size=int(noisy.sum()))
            labels = tags.copy()
            labels[rng.random(length) < 0.15] = -100  # sub-word continuations
            ids[0], ids[-1], labels[0], labels[-1] = 1, 2, -100, -100  # [CLS], [SEP]
            rows["input_ids"].append(ids.tolist())
            rows["labels"].append(labels.tolist())
        return Dataset.from_dict(rows)

    return DatasetDict(train=sentences(tagger.num_sentences), test=sentences(max(tagger.num_sentences // 4, 1)))


def conll_splits(tagger: TaggerArguments) -> tuple[DatasetDict, Any]:  # pragma: no cover - needs the Hub
    """CoNLL-2003 tokenised, the tag on each word's first sub-word and -100 elsewhere (as the transformers example)."""
    import datasets
    from transformers import AutoTokenizer

    raw = datasets.load_dataset("conll2003")
    tokenizer = AutoTokenizer.from_pretrained(tagger.tokenizer_name)

    def tokenize(batch: dict) -> dict:
        encoded = tokenizer(batch["tokens"], truncation=True, is_split_into_words=True)
        labels = []
        for i, tags in enumerate(batch["ner_tags"]):
            previous, row = None, []
            for word in encoded.word_ids(batch_index=i):
                row.append(-100 if word is None or word == previous else tags[word])
                previous = word
            labels.append(row)
        encoded["labels"] = labels
        return encoded

    splits = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names)
    return DatasetDict(train=splits["train"], test=splits["validation"]), tokenizer


def pad_batch(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Pads to the longest sentence of the batch: ids 0, attention mask 0, labels -100."""
    length = max(len(item["input_ids"]) for item in batch)
    padded: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
    for item in batch:
        pad = length - len(item["input_ids"])
        padded["input_ids"].append(list(item["input_ids"]) + [0] * pad)
        padded["attention_mask"].append([1] * len(item["input_ids"]) + [0] * pad)
        padded["labels"].append(list(item["labels"]) + [-100] * pad)
    return {key: torch.tensor(value) for key, value in padded.items()}


def build_tagger(tagger: TaggerArguments, vocab_size: int, seed: int) -> torch.nn.Module:
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=tagger.hidden_size,
        num_hidden_layers=tagger.num_hidden_layers,
        num_attention_heads=4,
        intermediate_size=2 * tagger.hidden_size,
        max_position_embeddings=512,
        num_labels=len(CONLL_TAGS),
        id2label=dict(enumerate(CONLL_TAGS)),
        label2id={tag: i for i, tag in enumerate(CONLL_TAGS)},
    )
    torch.manual_seed(seed)
    return AutoModelForTokenClassification.from_config(config)


def train_one(
    tagger: TaggerArguments, args: SemScaleTrainingArguments, splits: DatasetDict, vocab_size: int, collator: Any
) -> tuple[SemScaleTrainer, dict[str, float]]:
    trainer = SemScaleTrainer(
        model=build_tagger(tagger, vocab_size, args.seed),
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["test"],
        data_collator=collator,
    )
    trainer.train()
    return trainer, trainer.evaluate()


def per_tag_table(trainer: SemScaleTrainer, metrics: dict[str, float]) -> str:
    rows = []
    for tag_id, tag in enumerate(CONLL_TAGS):
        accuracy = metrics.get(f"eval_acc_class_{tag_id}", math.nan)
        rows.append(
            [
                tag,
                trainer.class_counts[tag_id],
                f"{float(trainer.semantic_scales[tag_id]):.3f}",
                f"{float(trainer.class_weights[tag_id]):.3f}",
                f"{accuracy:.3f}",
            ]
        )
    return markdown_table(["tag", "train tokens", "semantic scale", "weight", "token accuracy"], rows)


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    keys = ["eval_accuracy", "eval_balanced_accuracy", "eval_macro_f1", "eval_entity_f1"]
    rows = [[name] + [f"{m[k]:.3f}" if k in m else "n/a" for k in keys] for name, m in results.items()]
    return markdown_table(["weighting", "token accuracy", "balanced", "macro F1", "entity F1"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser((TaggerArguments, SemScaleTrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    tagger, args = parser.parse_args_into_dataclasses(args=argv)
    if tagger.dataset == "conll2003":  # pragma: no cover - needs the Hub
        splits, tokenizer = conll_splits(tagger)
        from transformers import DataCollatorForTokenClassification

        vocab_size, collator = tokenizer.vocab_size, DataCollatorForTokenClassification(tokenizer)
    elif tagger.dataset == "synthetic":
        splits, vocab_size, collator = synthetic_splits(tagger), 512, pad_batch
    else:
        raise ValueError(f"--dataset must be 'synthetic' or 'conll2003', got {tagger.dataset!r}")
    trainer, metrics = train_one(tagger, args, splits, vocab_size, collator)
    results = {f"{args.semscale_weighting} (p={args.semscale_power:g})": metrics}
    if tagger.compare_baseline and args.semscale_weighting != "none":
        baseline = dataclasses.replace(args, semscale_weighting="none", output_dir=args.output_dir + "-baseline")
        results["none (plain CE)"] = train_one(tagger, baseline, splits, vocab_size, collator)[1]
    print(per_tag_table(trainer, metrics))
    print()
    print(comparison_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
