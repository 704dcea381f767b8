"""The random-weight tiny ViT the extraction tests register (zoo ``test``): one definition for all."""

from partaware.encoders.base import EncoderSpec, WeightsSource

TINY = EncoderSpec(
    name="test/vit_tiny_rand",
    family="supervised",
    zoo="test",
    arch="vit_tiny_patch16_224",
    arch_kwargs={"img_size": 64},
    input_size=64,
    weights=WeightsSource(kind="random"),
)
