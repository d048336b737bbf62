"""A tiny tagger (BERT-sized down, random init) and a seeded, long-tailed synthetic tag set for token classification.

Sentences of 5 to 10 token ids; the first and last positions are special tokens and about one token in six is a
"sub-word" continuation, all labelled -100 as the transformers token-classification examples do. Tags follow a long
tail ("O" most tokens) and each tag draws its token ids from its own range of the vocabulary, so there is something
to learn.
"""

from __future__ import annotations

import torch
from datasets import Dataset
from transformers import AutoModelForTokenClassification

from _helpers.tiny_configs import bert_config


TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TAG_SHARES = [0.70, 0.10, 0.08, 0.07, 0.05]
VOCAB = 99


def tiny_tagger(seed: int = 0):
    torch.manual_seed(seed)
    config = bert_config(
        len(TAGS),
        id2label=dict(enumerate(TAGS)),
        label2id={tag: i for i, tag in enumerate(TAGS)},
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return AutoModelForTokenClassification.from_config(config)


def token_dataset(num_sentences: int = 24, seed: int = 0) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "labels": []}
    for _ in range(num_sentences):
        length = int(torch.randint(5, 11, (1,), generator=generator))
        tags = torch.multinomial(torch.tensor(TAG_SHARES), length, replacement=True, generator=generator)
        ids = 5 + tags * 18 + torch.randint(0, 18, (length,), generator=generator)
        labels = tags.clone()
        labels[torch.rand(length, generator=generator) < 1 / 6] = -100  # sub-word continuations
        labels[0] = labels[-1] = -100  # [CLS] and [SEP]
        ids[0], ids[-1] = 1, 2
        rows["input_ids"].append(ids.tolist())
        rows["labels"].append(labels.tolist())
    return Dataset.from_dict(rows)


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Pads to the longest sentence of the batch: input ids 0, attention mask 0, labels -100."""
    length = max(len(item["input_ids"]) for item in batch)
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for item in batch:
        pad = length - len(item["input_ids"])
        out["input_ids"].append(list(item["input_ids"]) + [0] * pad)
        out["attention_mask"].append([1] * len(item["input_ids"]) + [0] * pad)
        out["labels"].append(list(item["labels"]) + [-100] * pad)
    return {key: torch.tensor(value) for key, value in out.items()}
