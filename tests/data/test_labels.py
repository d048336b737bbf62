"""The one label counter: datasets through the Arrow column, other datasets item by item, -100 left out on request."""

import datasets
import numpy as np
import pytest
import torch

from semscale_hf.data import count_labels, count_positives


def test_dataset_column_and_plain_items_count_the_same():
    labels = [0, 2, 2, -100, 1, 2]
    dataset = datasets.Dataset.from_dict({"labels": labels, "pixel_values": [[0.0]] * 6})
    items = [{"labels": torch.tensor(v)} for v in labels]
    assert count_labels(dataset, 4, ignore_index=-100) == [1, 1, 3, 0]
    assert count_labels(items, 4, ignore_index=-100) == [1, 1, 3, 0]
    assert count_labels(dataset.rename_column("labels", "label"), ignore_index=-100) == [1, 1, 3]


def test_a_transform_is_not_run_to_count(tmp_path):
    def fail(batch):
        raise AssertionError("the transform ran")

    dataset = datasets.Dataset.from_dict({"label": [1, 0, 1]}).with_transform(fail)
    assert count_labels(dataset, 2) == [1, 2]


def test_bad_labels_name_the_column_and_what_to_pass():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\).*column 'labels'"):
        count_labels(datasets.Dataset.from_dict({"labels": [0, 3]}), 2)
    with pytest.raises(ValueError, match="unlabelled"):
        count_labels(datasets.Dataset.from_dict({"labels": [0, -100]}), 2)
    with pytest.raises(ValueError, match="class_counts"):
        count_labels(datasets.Dataset.from_dict({"y": [0, 1]}), 2)
    with pytest.raises(ValueError, match="class_counts"):
        count_labels([{"y": 0}], 2)


@pytest.mark.parametrize("length", [-1, 3])  # a list column, and a fixed-length one (Arrow fixed_size_list)
def test_token_label_lists_count_per_token(length):
    rows = [[0, -100, 2], [2, 2, -100]]
    features = datasets.Features({"labels": datasets.Sequence(datasets.Value("int64"), length=length)})
    dataset = datasets.Dataset.from_dict({"labels": rows}, features=features)
    assert count_labels(dataset, 3, ignore_index=-100) == [1, 0, 3]
    assert count_labels([{"labels": torch.tensor(r)} for r in rows], 3, ignore_index=-100) == [1, 0, 3]
    tags = datasets.Features({"ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-X", "I-X", "B-Y"]))})
    named = datasets.Dataset.from_dict({"ner_tags": [[0, 1, 2], [0]]}, features=tags)
    assert count_labels(named, label_column="ner_tags") == [2, 1, 1, 0]  # the ClassLabel inside gives 4 classes


@pytest.mark.parametrize("length", [-1, 3])
def test_multi_hot_vectors_count_positives_per_class(length):
    rows = [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    features = datasets.Features({"labels": datasets.Sequence(datasets.Value("float32"), length=length)})
    dataset = datasets.Dataset.from_dict({"labels": rows}, features=features)
    assert count_positives(dataset, 3) == [1, 0, 2]
    assert count_positives([{"labels": torch.tensor(r)} for r in rows], 3) == [1, 0, 2]
    with pytest.raises(ValueError, match="multi-hot vector of length 4"):
        count_positives(dataset, 4)


def test_a_stream_is_never_read_to_count_it():
    stream = datasets.Dataset.from_dict({"labels": [0, 1]}).to_iterable_dataset()
    with pytest.raises(ValueError, match="streaming"):
        count_labels(stream, 2)
    with pytest.raises(ValueError, match="streaming"):
        count_positives(stream, 2)


@pytest.mark.parametrize(
    "labels",
    [[0.0, 1.7, 1.2], ["1", "2"], ["cat"], [True, False], [torch.tensor(1.5)], [[0, 1], [0.5]]],
    ids=["floats", "digit-strings", "names", "bools", "float-tensor", "float-token-list"],
)
def test_labels_that_are_not_integer_class_ids_raise_type_error_on_both_paths(labels):
    # The item path once cast them (1.7 -> 1, "1" -> 1): counts that silently differ from the Arrow path's.
    with pytest.raises(TypeError, match="integer class ids"):
        count_labels([{"label": v} for v in labels])
    if not isinstance(labels[0], torch.Tensor):  # the Arrow path, which was right
        with pytest.raises(TypeError, match="integer class ids"):
            count_labels(datasets.Dataset.from_dict({"label": labels}))


def test_integer_items_of_every_kind_count():
    items = [{"label": 1}, {"label": np.int32(2)}, {"label": torch.tensor(0)}, {"label": np.uint8(2)}]
    assert count_labels(items) == [1, 1, 2]
    assert count_labels([{"labels": []}, {"labels": [1, 1]}, {"labels": torch.tensor([0])}], 2) == [1, 2]


def test_multi_hot_vectors_of_the_wrong_length_are_rejected_row_by_row():
    # 3 + 1 values make 2 rows of 2 in total: the count must still fail, as no row is a 2-vector.
    rows = [[1.0, 1.0, 1.0], [0.0]]
    with pytest.raises(ValueError, match="multi-hot vector of length 2"):
        count_positives(datasets.Dataset.from_dict({"labels": rows}), 2)
    with pytest.raises(ValueError, match="multi-hot vector of length 2"):
        count_positives([{"labels": r} for r in rows], 2)
    with pytest.raises(ValueError, match="multi-hot vector of length 2"):
        count_positives(datasets.Dataset.from_dict({"labels": [[1.0, 0.0], None]}), 2)


def test_token_labels_with_minus_100_point_to_ignore_index():
    rows = [[-100, 0, 1, -100], [-100, 2, -100]]
    for dataset in (datasets.Dataset.from_dict({"labels": rows}), [{"labels": r} for r in rows]):
        with pytest.raises(ValueError, match=r"pass ignore_index=-100"):
            count_labels(dataset)
        with pytest.raises(ValueError, match=r"pass ignore_index=-100.*right num_classes"):
            count_labels(dataset, 2)  # -100 and a class id too large: both pieces of advice
    with pytest.raises(ValueError, match="unlabelled") as error:
        count_labels(datasets.Dataset.from_dict({"labels": [0, -1]}), 2)
    assert "ignore_index" not in str(error.value)


def test_a_missing_label_column_names_what_was_looked_for_and_what_to_pass():
    for dataset in (datasets.Dataset.from_dict({"y": [0, 1]}), [{"y": 0}]):
        with pytest.raises(
            ValueError, match=r"'labels' and 'label'.*label_column.*class_counts=\[\.\.\.\] to the trainer"
        ):
            count_labels(dataset, 2)
        with pytest.raises(ValueError, match=r"'labels' and 'label'.*label_column"):
            count_positives(dataset, 2)
    # Named by the caller (class_counts, make_long_tailed): the trainer's class_counts is no advice there.
    for dataset in (datasets.Dataset.from_dict({"y": [0, 1]}), [{"y": 0}]):
        with pytest.raises(ValueError, match=r"'fine_label' not found.*pass label_column") as error:
            count_labels(dataset, 2, label_column="fine_label")
        assert "trainer" not in str(error.value)
