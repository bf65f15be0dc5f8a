"""One row of the catalog: every fact about one model that the rest of dinovault needs, as data.

A family module (``dinov2.py``, ``dinov3.py``) makes the rows; nothing else derives a file name, a URL, a hub
repository or a shape from a model's name. No torch here: the downloader, the CLI and `invoke list` use it
without paying for torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the torch.hub entry name, e.g. dinov2_vitb14_reg
    family: str  # e.g. "dinov2"
    arch: str  # the official folder name, e.g. dinov2_vitb14
    upstream_file: str  # the official file name, e.g. dinov2_vitb14_reg4_pretrain.pth
    upstream_path: str  # below the family's official base URL, e.g. dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth
    base_url: str  # the family's official base URL (mirrors may replace it; model cards always record this one)
    license: str
    builder: str  # which network of model/ builds it, e.g. "dinov2_vit"
    patch_size: int
    img_size: int  # the pretraining resolution the position embeddings are stored for
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str  # "mlp" or "swiglu"
    ffn_hidden: int
    num_register_tokens: int = 0  # tokens between CLS and the patches: DINOv2 registers, DINOv3 storage tokens
    interpolate_offset: float = 0.0
    interpolate_antialias: bool = False
    hub_repos: tuple[tuple[str, str], ...] = ()  # (hub, repository) pairs, e.g. ("hf", "facebook/dinov2-base")
    # Added for DINOv3; the defaults are DINOv2's, so its rows are unchanged.
    weights: str = ""  # the official weights name, e.g. "LVD1689M" or "SAT493M" (DINOv3); "" for DINOv2
    hash_prefix: str | None = None  # the file name's 8 hex digits: the start of the file's SHA-256
    rope_base: float | None = None  # RoPE base period (DINOv3 ViT); None: learned position embeddings
    qkv_bias: bool = True
    mask_k_bias: bool = False  # the key's third of qkv.bias multiplied by a stored mask (qkv.bias_mask)
    norm_eps: float = 1e-6
    local_cls_norm: bool = False  # an extra, training-only norm for local crops (local_cls_norm.*)
    dims: tuple[int, ...] = ()  # ConvNeXt: channels of the 4 stages (embed_dim is the last)
    depths: tuple[int, ...] = ()  # ConvNeXt: blocks in each stage (depth counts the stages)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # preprocessing: ImageNet unless stated
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    shapes: Callable[[ModelSpec], dict[str, tuple[int, ...]]] | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        """The official URL, recorded in model cards: independent of mirrors, so cards do not change with them."""
        return f"{self.base_url}/{self.upstream_path}"

    def hub_repo(self, hub: str) -> str | None:
        """The repository holding this model on ``hub`` (e.g. ``"hf"``), None when it has none there."""
        return dict(self.hub_repos).get(hub)

    def state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key of the official checkpoint with its shape, in file order."""
        assert self.shapes is not None, f"{self.name}: no state_dict shapes"
        return self.shapes(self)

    @property
    def num_params(self) -> int:
        total = 0
        for shape in self.state_dict_shapes().values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total


def vit_block_shapes(depth: int, d: int, qkv: dict, ffn: dict) -> dict[str, tuple[int, ...]]:
    """The keys of a ViT's blocks and final norm with their shapes, in the file order of both families' official
    checkpoints (``qkv`` and ``ffn``: a block's attention-input and MLP keys, which differ between them)."""
    block = {"norm1.weight": (d,), "norm1.bias": (d,), **qkv, "attn.proj.weight": (d, d), "attn.proj.bias": (d,),
             "ls1.gamma": (d,), "norm2.weight": (d,), "norm2.bias": (d,), **ffn, "ls2.gamma": (d,)}
    shapes = {f"blocks.{i}.{key}": shape for i in range(depth) for key, shape in block.items()}
    return {**shapes, "norm.weight": (d,), "norm.bias": (d,)}
