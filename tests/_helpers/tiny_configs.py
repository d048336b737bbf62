"""Tiny random-init configs of the non-ViT architectures the tests run (docs/hf-ecosystem.md section 4).

The ViT/DeiT sizes stay with each test file: they pick image and patch sizes to suit what the file checks.
"""

from transformers import BertConfig, ConvNextConfig, ResNetConfig, SwinConfig, Wav2Vec2Config


def swin_config(num_labels: int) -> SwinConfig:
    """32 x 32 images; embed_dim 16 doubles at the one patch merging, so the head's in_features is 32."""
    return SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=4,
        num_labels=num_labels,
    )


def convnext_config(num_labels: int) -> ConvNextConfig:
    """Head in_features 16."""
    return ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=num_labels)


def resnet_config(num_labels: int) -> ResNetConfig:
    """Head in_features 16."""
    return ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=num_labels
    )


def bert_config(num_labels: int, **overrides) -> BertConfig:
    """Vocabulary 99, hidden size 32 (the head's in_features)."""
    sizes = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    return BertConfig(**sizes, num_labels=num_labels, **overrides)


def wav2vec2_config(num_labels: int) -> Wav2Vec2Config:
    """Raw waveforms of 800 samples; the head's input is the projection of size 8 (`classifier_proj_size`)."""
    return Wav2Vec2Config(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=8,
        num_labels=num_labels,
    )
