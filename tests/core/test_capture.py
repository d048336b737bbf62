"""FeatureCapture: the captured features are the classification head's input, on tiny random-config models."""

import pytest
import torch
import torch.nn.functional as F
from _helpers.tiny_configs import bert_config, convnext_config, resnet_config, swin_config
from torch import nn
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    DeiTConfig,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    ViTConfig,
)

from semscale_hf.core.capture import FeatureCapture, find_classifier_head


NUM_LABELS = 3
BATCH = 4
_VIT_SIZES = dict(
    image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
)


def build_model(name: str, num_labels: int = NUM_LABELS) -> nn.Module:
    torch.manual_seed(0)
    if name == "vit":  # dropout on, so train mode differs from eval mode
        config = ViTConfig(**_VIT_SIZES, hidden_dropout_prob=0.1, num_labels=num_labels)
    elif name == "deit":
        # the auto mapping for deit holds a tuple of classes and cannot build from a bare config
        return DeiTForImageClassification(DeiTConfig(**_VIT_SIZES, hidden_dropout_prob=0.1, num_labels=num_labels))
    elif name == "swin":
        config = swin_config(num_labels)
    elif name == "convnext":
        config = convnext_config(num_labels)
    elif name == "resnet":
        config = resnet_config(num_labels)
    elif name == "bert":
        return AutoModelForSequenceClassification.from_config(bert_config(num_labels))
    else:
        raise ValueError(name)
    return AutoModelForImageClassification.from_config(config)


def make_inputs(name: str, batch: int = BATCH) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    if name == "bert":
        return {"input_ids": torch.randint(0, 99, (batch, 7), generator=generator)}
    size = 16 if name in ("vit", "deit") else 32
    return {"pixel_values": torch.randn(batch, 3, size, size, generator=generator)}


MODELS = ["vit", "deit", "swin", "convnext", "resnet", "bert"]
CHECKPOINTING_MODELS = ["vit", "deit", "swin", "bert"]  # ConvNeXt and ResNet do not support it
EXPECTED_HEADS = {"resnet": "classifier.1"}  # every other model here: "classifier"


def record_head_calls(head: nn.Module) -> tuple[list, torch.utils.hooks.RemovableHandle]:
    """An independent forward hook recording (input, output) of every head call."""
    calls = []
    handle = head.register_forward_hook(lambda module, args, output: calls.append((args[0].detach(), output.detach())))
    return calls, handle


@pytest.mark.parametrize("name", MODELS)
def test_features_times_head_equal_logits_in_eval_mode(name):
    model = build_model(name).eval()
    with FeatureCapture(model, NUM_LABELS) as capture, torch.no_grad():
        logits = model(**make_inputs(name)).logits
        features = capture.features
    assert capture.module_name == EXPECTED_HEADS.get(name, "classifier")
    assert features.shape == (BATCH, capture.dim) and not features.requires_grad
    head = capture.head
    torch.testing.assert_close(F.linear(features, head.weight, head.bias), logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_train_mode_captures_the_actual_head_input(name):
    model = build_model(name).train()
    inputs = make_inputs(name)
    with FeatureCapture(model, NUM_LABELS) as capture:
        calls, handle = record_head_calls(capture.head)
        logits = model(**inputs).logits
        handle.remove()
        features = capture.features
    assert len(calls) == 1
    head_input, head_output = calls[0]
    assert torch.equal(features, head_input) and not features.requires_grad
    torch.testing.assert_close(F.linear(features, capture.head.weight, capture.head.bias), logits)
    assert torch.equal(head_output, logits.detach())
    if name in ("bert", "vit", "deit"):  # dropout is active: the train-mode input is not the eval-mode one
        with FeatureCapture(model.eval(), NUM_LABELS) as capture, torch.no_grad():
            model(**inputs)
            assert not torch.equal(capture.features, features)


@pytest.mark.parametrize("name", CHECKPOINTING_MODELS)
def test_activation_checkpointing_keeps_the_head_input(name):
    model = build_model(name)
    # the non-deprecated name of gradient_checkpointing_enable (which Trainer also calls in transformers 5.x)
    model.activation_checkpointing_enable()
    model.train()
    with FeatureCapture(model, NUM_LABELS) as capture:
        calls, handle = record_head_calls(capture.head)
        logits = model(**make_inputs(name)).logits
        logits.sum().backward()  # recomputes the checkpointed layers
        handle.remove()
        features = capture.pop()
    assert calls, "the head was never called"
    assert torch.equal(features, calls[-1][0])
    torch.testing.assert_close(F.linear(features, capture.head.weight, capture.head.bias), logits.detach())
    assert capture.features is None


@pytest.mark.parametrize("name", ["vit", "resnet", "bert"])
def test_bf16_autocast(name):
    model = build_model(name).eval()
    with FeatureCapture(model, NUM_LABELS) as capture, torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**make_inputs(name)).logits
            features = capture.features
            recomputed = F.linear(features, capture.head.weight, capture.head.bias)
    assert features.shape == (BATCH, capture.dim)
    assert features.dtype in (torch.float32, torch.bfloat16)
    assert bool(torch.isfinite(features).all())
    torch.testing.assert_close(recomputed, logits)


def test_overwrites_and_pop():
    model = build_model("bert").eval()
    capture = FeatureCapture(model, NUM_LABELS)
    assert capture.features is None and capture.pop() is None
    with torch.no_grad():
        model(**make_inputs("bert", batch=4))
        model(**make_inputs("bert", batch=2))
    assert capture.features.shape == (2, 32)  # the latest call only, never concatenated
    assert capture.pop().shape == (2, 32) and capture.features is None
    capture.close()


def test_close_removes_every_hook():
    model = build_model("resnet")
    capture = FeatureCapture(model, NUM_LABELS, feature_module="classifier")
    assert len(capture.head._forward_pre_hooks) == 1
    capture.close()
    capture.close()  # idempotent
    assert all(not module._forward_pre_hooks for module in model.modules())
    with torch.no_grad():
        model(**make_inputs("resnet"))
    assert capture.features is None
    with pytest.raises(RuntimeError, match="boom"), FeatureCapture(model, NUM_LABELS):
        raise RuntimeError("boom")
    assert all(not module._forward_pre_hooks for module in model.modules())


def test_named_sequential_resolves_to_its_last_linear():
    model = build_model("resnet").eval()
    assert isinstance(model.classifier, nn.Sequential)
    with FeatureCapture(model, NUM_LABELS, feature_module="classifier") as capture, torch.no_grad():
        logits = model(**make_inputs("resnet")).logits
        assert capture.module_name == "classifier.1" and capture.dim == 16
        assert capture.features.shape == (BATCH, 16)
        torch.testing.assert_close(F.linear(capture.features, capture.head.weight, capture.head.bias), logits)


def test_hand_written_modules():
    torch.manual_seed(0)
    # peft-style MLP; its hidden size equals num_labels, so two layers match and the last one is the head
    mlp = nn.Sequential(nn.Linear(10, 2), nn.ReLU(), nn.Dropout(0.5), nn.Linear(2, 2))
    assert find_classifier_head(mlp, 2)[0] == "3"
    # a named container with several layers resolves to the last Linear inside it
    model = nn.Sequential(nn.Linear(10, 6), nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2)))
    with FeatureCapture(model, 2, feature_module="1") as capture:
        inputs = torch.randn(5, 10)
        model(inputs)
        assert capture.module_name == "1.2"
        torch.testing.assert_close(capture.features, model[1][:2](model[0](inputs)).detach())
    # a head fed a (batch, 1, dim) tensor: features come back 2-D
    model = nn.Sequential(nn.Linear(10, 6), nn.Unflatten(1, (1, 6)), nn.Linear(6, 2))
    with FeatureCapture(model, 2, feature_module="2") as capture:
        inputs = torch.randn(5, 10)
        model(inputs)
        torch.testing.assert_close(capture.features, model[0](inputs).detach())
        assert capture.features.shape == (5, 6)


def test_errors_are_clear():
    model = build_model("bert")
    with pytest.raises(ValueError, match=r"out_features=5 .*classifier \(out_features=3\)"):
        FeatureCapture(model, num_labels=5)
    with pytest.raises(ValueError, match=r"out_features=5 .*classifier \(out_features=3\)"):
        find_classifier_head(model, num_labels=5)
    with pytest.raises(ValueError, match="'clasifier' is not a module of BertForSequenceClassification"):
        FeatureCapture(model, NUM_LABELS, feature_module="clasifier")
    with pytest.raises(ValueError, match="'bert.pooler.dense' with out_features=32, but num_labels=3"):
        FeatureCapture(model, NUM_LABELS, feature_module="bert.pooler.dense")
    with pytest.raises(ValueError, match="'bert.embeddings' is a BertEmbeddings with no nn.Linear inside"):
        FeatureCapture(model, NUM_LABELS, feature_module="bert.embeddings")
    with pytest.raises(ValueError, match="no nn.Linear at all"):
        find_classifier_head(nn.Sequential(nn.ReLU()), 2)
    with pytest.raises(ValueError, match="num_labels must be a positive integer"):
        FeatureCapture(model, 0)
    assert all(not module._forward_pre_hooks for module in model.modules())  # failures register nothing


def test_a_model_with_two_heads_asks_which_one():
    # DeiT with teacher, LeViT and SwiftFormer classify with two heads: the detection took the last one (the
    # distillation head) without a word
    model = DeiTForImageClassificationWithTeacher(DeiTConfig(**_VIT_SIZES, num_labels=NUM_LABELS))
    with pytest.raises(ValueError, match=r"two classification heads .*'cls_classifier', 'distillation_classifier'"):
        FeatureCapture(model, NUM_LABELS)
    with FeatureCapture(model, NUM_LABELS, feature_module="cls_classifier") as capture:
        assert capture.module_name == "cls_classifier"
    # an inner layer of the backbone that matches (num_labels equal to the hidden size) is no second head
    wide = AutoModelForImageClassification.from_config(ViTConfig(**_VIT_SIZES, num_labels=32))
    assert find_classifier_head(wide, 32)[0] == "classifier"
    # nor is a projection before the head that happens to have num_labels outputs (Wav2Vec2's projector)
    projected = nn.Module()
    projected.base_model_prefix = "backbone"
    projected.backbone, projected.projector, projected.classifier = nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(4, 4)
    assert find_classifier_head(projected, 4)[0] == "classifier"
