"""Model registry: small networks that are DP-compatible *as built*.

Opacus can only compute per-sample gradients for layers it knows, and BatchNorm mixes
examples within a batch (which breaks sample-level DP). Instead of building a standard model
and "fixing" it afterwards, every model here is assembled from Opacus-friendly parts
(GroupNorm, Conv, Linear, `opacus.layers.DPGRU`/`DPLSTM`) so that
`ModuleValidator.validate(model, strict=True)` passes on the model the registry returns, and
the very same architecture is used with and without privacy.

Weights travel between sites and server as a list of numpy arrays in `state_dict` order
(`get_weights` / `set_weights`); `set_weights` checks every array *before* loading any, so a
bad update can never leave a model half-overwritten.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
import torch
from opacus.layers import DPGRU, DPLSTM
from torch import nn

from common.errors import ConfigError, ModelMismatchError

MODEL_NAMES = ("cnn", "gru", "lstm", "mlp", "text-bag", "text-linear", "text-gru", "text-lstm")
# text -> text-linear: on medical-abstracts under DP-SGD it beats text-bag and the bidirectional
# GRU, at a fraction of their time per round (docs/BENCHMARKS.md, "Clinical text").
_DEFAULT_BY_MODALITY = {"image": "cnn", "signal": "gru", "tabular": "mlp", "text": "text-linear"}


def default_model_for(modality: str) -> str:
    """The registry name that suits a data modality (image -> cnn, signal -> gru, tabular -> mlp,
    text -> text-linear)."""
    try:
        return _DEFAULT_BY_MODALITY[modality]
    except KeyError:
        raise ConfigError(
            f"No default model for modality {modality!r}.",
            f"use one of {', '.join(_DEFAULT_BY_MODALITY)}, or name a model explicitly ({', '.join(MODEL_NAMES)}).",
        ) from None


def resolve_model_name(requested: str, modality: str) -> str:
    """The registry name a run uses: `requested`, or the modality's default for "auto".

    The server builds the initial weights and every site builds the model that receives them;
    both resolve the name here, so they cannot disagree on the architecture.
    """
    return requested if requested != "auto" else default_model_for(modality)


def _groups(channels: int, wanted: int = 8) -> int:
    """Largest group count <= `wanted` that divides `channels` (GroupNorm requires it)."""
    for g in range(min(wanted, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


# ----------------------------------------------------------------------------- CNN


class CNN(nn.Module):
    """Conv -> GroupNorm -> ReLU blocks, then global average pooling and a linear head.

    Three main blocks (channels `width`, `2*width`, `2*width`, each halving the resolution)
    give ~56k parameters at width 32 for 28x28 inputs. Larger images first pass through one
    "patchify" convolution (kernel = stride = a power of two) that brings the short side to <= 32
    pixels (224 -> 28), so a 224x224 image costs about as much as a 28x28 one on a CPU;
    adaptive pooling makes the head independent of the input size.
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int], num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        side = min(image_size)
        if side > 32:  # patchify stem: one conv with kernel = stride = 2^k brings the short side to <= 32
            stride = 2 ** math.ceil(math.log2(side / 32))
            layers += [
                nn.Conv2d(channels, width, kernel_size=stride, stride=stride),
                nn.GroupNorm(_groups(width), width),
                nn.ReLU(),
            ]
            channels = width
        for out in (width, 2 * width, 2 * width):
            layers += [
                nn.Conv2d(channels, out, 3, padding=1),
                nn.GroupNorm(_groups(out), out),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


# ----------------------------------------------------------------------------- RNN


class RNNClassifier(nn.Module):
    """GRU/LSTM over signals shaped (n, channels, length).

    Uses Opacus' DPGRU/DPLSTM (plain nn.GRU/LSTM have no per-sample gradient support). The
    recurrent layers run a Python loop over time steps, so long signals are first shortened
    by a strided Conv1d front (`downsample` > 1), which Opacus supports natively. The class
    is predicted from the last hidden state.
    """

    def __init__(
        self,
        cell: str,
        in_channels: int,
        length: int,
        num_classes: int,
        hidden_size: int = 32,
        num_layers: int = 1,
        downsample: int | None = None,
        front_channels: int = 16,
    ) -> None:
        super().__init__()
        if downsample is None:  # auto: keep the recurrent part at <= ~70 steps
            downsample = max(1, math.ceil(length / 70))
        self.front: nn.Module
        if downsample > 1:
            self.front = nn.Sequential(
                nn.Conv1d(
                    in_channels, front_channels, kernel_size=2 * downsample, stride=downsample, padding=downsample // 2
                ),
                nn.GroupNorm(_groups(front_channels, 4), front_channels),
                nn.ReLU(),
            )
            rnn_input = front_channels
        else:
            self.front = nn.Identity()
            rnn_input = in_channels
        rnn_type = DPGRU if cell == "gru" else DPLSTM
        self.rnn = rnn_type(rnn_input, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.front(x).transpose(1, 2)  # (n, C, L) -> (n, L, C)
        out, _ = self.rnn(seq)
        return self.head(out[:, -1])


# ----------------------------------------------------------------------------- MLP


class MLP(nn.Module):
    """Fully connected network for tables; `hidden=()` is logistic regression."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (32,)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)



# ----------------------------------------------------------------------------- text


def _token_ids(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 token ids (the dataset contract, common/datasets/tokenise.py) -> long ids and a
    float mask (n, L, 1) of the non-padding positions (id 0 is padding)."""
    ids = x.long()
    return ids, (ids != 0).unsqueeze(-1).to(torch.float32)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the sequence of ``values`` (n, L, d) at the positions ``mask`` marks."""
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class TextBag(nn.Module):
    """Embedding bag: the mean of a document's word embeddings, then a linear layer.

    Built from `nn.Embedding` plus a masked mean rather than `nn.EmbeddingBag` because Opacus'
    ghost clipping has a norm sampler for Embedding only; the function is the same.
    """

    def __init__(self, buckets: int, num_classes: int, embed_dim: int = 64, init_std: float = 0.01) -> None:
        super().__init__()
        self.embedding = nn.Embedding(buckets, embed_dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = _token_ids(x)
        summed = (self.embedding(ids) * mask).sum(dim=1)
        return self.head(summed / mask.sum(dim=1).clamp(min=1.0).sqrt())


# Fixed odd constants and a prime below 2**31 for the bigram hash: products stay below 2**63.
_BIGRAM_PRIME = 2_147_483_629
_BIGRAM_MULTIPLIERS = (1_000_003, 1_640_531_527)


def hashed_bigrams(ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """(n, L) long token ids -> (n, L - 1) ids of the bigrams of consecutive tokens, in 1..buckets-1
    (0 where either token is padding).

    The bigram's id is a fixed hash of its two tokens' ids, so like the tokeniser it depends on
    the document alone (tests/test_text.py); bigrams share the tokens' buckets, as in fastText.
    """
    a, b = ids[:, :-1], ids[:, 1:]
    k1, k2 = _BIGRAM_MULTIPLIERS
    mixed = ((a * k1 + b) % _BIGRAM_PRIME * k2 + 7) % _BIGRAM_PRIME
    return torch.where((a > 0) & (b > 0), mixed % (buckets - 1) + 1, torch.zeros_like(a))


def sublinear_l2_weights(features: torch.Tensor) -> torch.Tensor:
    """A weight per position of (n, M) feature ids such that summing the features' rows with
    these weights gives each distinct feature log(1 + count) and the document's feature vector
    unit L2 norm: TF-IDF's sublinear term frequency and normalisation, without its IDF (a
    corpus statistic). Each document is weighted from its own ids only. Padding (0) gets 0."""
    real = features > 0
    ordered, order = features.sort(dim=1)  # equal ids side by side: a count per run of them
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run = starts.long().cumsum(dim=1) - 1
    run_counts = torch.zeros_like(ordered).scatter_add_(1, run, torch.ones_like(ordered))
    counts = torch.empty_like(ordered).scatter_(1, order, run_counts.gather(1, run)).to(torch.float32)
    per_position = torch.log1p(counts) / counts * real
    norm = (per_position.square() * counts).sum(dim=1, keepdim=True).sqrt().clamp(min=1e-12)
    return per_position / norm


class TextLinear(nn.Module):
    """A linear classifier on the hashed bag of words (optionally + bigrams), log(1 + tf), L2-normalised.

    The features behave like TF-IDF (the centralised reference of docs/BENCHMARKS.md) without
    any corpus statistic: the tokeniser's content-word stems (common/datasets/tokenise.py) do
    much of IDF's work. The model is one row of class scores per hash bucket (an embedding of
    width = number of classes) plus a bias, so DP-SGD noises 5 numbers per bucket instead of
    the 64 of text-bag's embeddings and a head. Built from `nn.Embedding` (Opacus' ghost
    clipping has a norm sampler for it) and an `nn.Linear` on a constant input for the bias (a
    bare parameter has no per-sample gradient).

    Two constants set how DP-SGD's clipping budget is spent, both chosen on the validation
    split (docs/BENCHMARKS.md 4c, medfed's default recipe: batch 128, lr 0.5, 2 local epochs):
    * ``scale`` (3): the document vector's norm. Per-example gradients then sit above
      max-grad-norm = 1, so every note moves the model by the same clipped amount, and
      medfed's default learning rate is large enough: scale 3 at lr 0.5, batch 128 reached the
      validation macro AUC of scale 1 at lr 8, batch 512 (0.81 and 0.82, 3 seeds).
    * ``bias_input`` (0.05): the constant the bias multiplies. With 1 the bias gradient, as
      large as the words' whole gradient, took half of each note's clipping budget for the one
      thing (class frequencies) that needs least; at scale 1, lr 8, batch 512 a bias input of
      0.1 instead of 1 raised validation accuracy from 0.43 to 0.53 (3 seeds).
    """

    def __init__(
        self, buckets: int, num_classes: int, bigrams: bool = False, scale: float = 3.0, bias_input: float = 0.05
    ) -> None:
        super().__init__()
        self.buckets = buckets
        self.bigrams = bigrams
        self.scale = scale
        self.bias_input = bias_input
        self.embedding = nn.Embedding(buckets, num_classes, padding_idx=0)
        nn.init.zeros_(self.embedding.weight)
        self.bias = nn.Linear(1, num_classes, bias=False)
        nn.init.zeros_(self.bias.weight)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(feature ids (n, M), weights (n, M)) of a batch of float32 token ids."""
        ids = x.long()
        with torch.no_grad():
            feats = torch.cat([ids, hashed_bigrams(ids, self.buckets)], dim=1) if self.bigrams else ids
            weights = sublinear_l2_weights(feats) * self.scale
        return feats, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, weights = self.features(x)
        scores = (self.embedding(feats) * weights.unsqueeze(-1)).sum(dim=1)
        constant = torch.full((x.shape[0], 1), self.bias_input, dtype=scores.dtype, device=scores.device)
        return scores + self.bias(constant)


class TextRNN(nn.Module):
    """Word embeddings -> window means -> bidirectional DPGRU/DPLSTM -> masked mean -> linear.

    Opacus' DP RNN layers (per-sample gradients; plain nn.GRU/LSTM have none) run a Python loop
    over time steps: 256 tokens took 89 s per 700 documents per epoch under DP-SGD on 2 cores.
    So the embeddings of each ``window`` consecutive tokens are averaged first (a phrase per
    step, 256 tokens -> 32 steps). Mean-pooling the outputs over the windows that hold real
    tokens, not the last state, keeps padding out of the prediction.
    """

    def __init__(
        self,
        cell: str,
        buckets: int,
        num_classes: int,
        embed_dim: int = 32,
        hidden_size: int = 32,
        window: int = 8,
    ) -> None:
        super().__init__()
        self.window = window
        self.embedding = nn.Embedding(buckets, embed_dim, padding_idx=0)
        rnn_type = DPGRU if cell == "gru" else DPLSTM
        self.rnn = rnn_type(embed_dim, hidden_size, num_layers=1, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = _token_ids(x)
        n, length = ids.shape
        steps = math.ceil(length / self.window)
        pad = steps * self.window - length
        emb = nn.functional.pad(self.embedding(ids) * mask, (0, 0, 0, pad))
        counts = nn.functional.pad(mask, (0, 0, 0, pad)).reshape(n, steps, self.window, 1).sum(dim=2)
        phrases = emb.reshape(n, steps, self.window, -1).sum(dim=2) / counts.clamp(min=1.0)
        out, _ = self.rnn(phrases)
        return self.head(_masked_mean(out, (counts > 0).to(torch.float32)))


# ----------------------------------------------------------------------------- registry


def _build_cnn(shape: tuple[int, ...], k: int, **sizes: Any) -> nn.Module:
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ConfigError(
            f"The cnn model needs images shaped (channels, height, width) with 1 or 3 channels; got {shape}.",
            "use model=mlp for tables or model=gru/lstm for signals.",
        )
    if min(shape[1:]) < 8:
        raise ConfigError(
            f"Images of {shape[1]}x{shape[2]} pixels are too small for the cnn model.",
            "use images of at least 8x8 pixels (28x28 to 224x224 are supported).",
        )
    return CNN(shape[0], (shape[1], shape[2]), k, **sizes)


def _rnn_builder(cell: str) -> Callable[..., nn.Module]:
    def build(shape: tuple[int, ...], k: int, **sizes: Any) -> nn.Module:
        if len(shape) != 2:
            raise ConfigError(
                f"The {cell} model needs signals shaped (channels, length); got {shape}.",
                "use model=cnn for images or model=mlp for tables.",
            )
        return RNNClassifier(cell, shape[0], shape[1], k, **sizes)

    return build


def _text_builder(kind: str) -> Callable[..., nn.Module]:
    def build(shape: tuple[int, ...], k: int, buckets: int | None = None, **sizes: Any) -> nn.Module:
        if len(shape) != 1 or buckets is None:
            raise ConfigError(
                f"The text-{kind} model needs token ids shaped (max_tokens,) and the number of hash buckets; "
                f"got shape {shape}, buckets {buckets}.",
                "use it with text data (modality text), or model=cnn/gru/mlp for images, signals, tables.",
            )
        if kind == "bag":
            return TextBag(buckets, k, **sizes)
        if kind == "linear":
            return TextLinear(buckets, k, **sizes)
        return TextRNN(kind, buckets, k, **sizes)

    return build


def _build_mlp(shape: tuple[int, ...], k: int, **sizes: Any) -> nn.Module:
    return MLP(int(np.prod(shape)), k, **sizes)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "cnn": _build_cnn,
    "gru": _rnn_builder("gru"),
    "lstm": _rnn_builder("lstm"),
    "mlp": _build_mlp,
    "text-bag": _text_builder("bag"),
    "text-linear": _text_builder("linear"),
    "text-gru": _text_builder("gru"),
    "text-lstm": _text_builder("lstm"),
}


def model_options(modality: str, hash_buckets: int) -> dict[str, Any]:
    """The size options a modality's models need from the run config: text models are told the
    tokeniser's number of hash buckets (their embedding rows); other models need none. The
    server and every site call this, so their architectures agree."""
    return {"buckets": hash_buckets} if modality == "text" else {}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **sizes: Any) -> nn.Module:
    """Build a registered model for inputs of `input_shape` (per example) and `num_classes`.

    `sizes` are architecture knobs: cnn `width`; gru/lstm `hidden_size`, `num_layers`,
    `downsample`, `front_channels`; mlp `hidden` (tuple of layer widths); text-bag `buckets`,
    `embed_dim`; text-linear `buckets`, `bigrams`, `scale`, `bias_input`; text-gru/text-lstm `buckets`, `embed_dim`, `hidden_size`, `window` (see `model_options`).
    """
    if name not in _BUILDERS:
        raise ConfigError(f"model={name!r} is unknown.", f"use one of {', '.join(MODEL_NAMES)}.")
    if num_classes < 2:
        raise ConfigError(
            f"A classifier needs at least 2 classes; got num_classes={num_classes}.", "check the dataset's labels."
        )
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(
            f"input_shape={input_shape} is not a valid per-example shape.", "pass e.g. (1, 28, 28), (1, 140) or (10,)."
        )
    try:
        return _BUILDERS[name](shape, num_classes, **sizes)
    except TypeError as err:  # an unknown size keyword
        raise ConfigError(
            f"Invalid size option for model {name!r}: {err}.",
            "see build_model's docstring for the options of each model.",
        ) from None


# ----------------------------------------------------------------------------- weights


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside an Opacus GradSampleModule (state-dict names without `_module.`)."""
    inner = getattr(model, "_module", None)
    return inner if isinstance(inner, nn.Module) else model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_signature(model: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) per state-dict entry: what a weight update must match."""
    state = unwrap_model(model).state_dict()
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()]


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """State-dict values as numpy arrays (copies), in state-dict order."""
    return [v.detach().cpu().numpy().copy() for v in unwrap_model(model).state_dict().values()]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load `weights` (state-dict order) after checking count, shapes, dtypes and finiteness.

    Everything is checked first and all problems are reported together; nothing is loaded
    unless every array fits, so a rejected update leaves the model untouched.
    """
    state = unwrap_model(model).state_dict()
    if len(weights) != len(state):
        raise ModelMismatchError(
            f"Received {len(weights)} weight arrays but the model has {len(state)} state-dict entries.",
            "make sure the server and every site use the same model (model, width/hidden sizes, input shape, classes).",
        )
    problems: list[str] = []
    arrays: list[np.ndarray] = []
    for (name, ref), w in zip(state.items(), weights):
        arr = np.asarray(w)
        expected = torch.empty((), dtype=ref.dtype).numpy().dtype
        if tuple(arr.shape) != tuple(ref.shape):
            problems.append(f"{name}: shape {tuple(arr.shape)}, expected {tuple(ref.shape)}")
        elif arr.dtype != expected:
            problems.append(f"{name}: dtype {arr.dtype}, expected {expected}")
        elif arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            problems.append(f"{name}: contains NaN or infinite values")
        arrays.append(arr)
    if problems:
        raise ModelMismatchError(
            "Received weights do not fit the model:\n  - " + "\n  - ".join(problems),
            "check that both ends use the same model configuration; a NaN/inf update means training diverged "
            "(lower the learning rate or max-grad-norm).",
        )
    target = unwrap_model(model)
    loaded = OrderedDict(
        (name, torch.from_numpy(arr.copy()).to(ref.device)) for (name, ref), arr in zip(state.items(), arrays)
    )
    target.load_state_dict(loaded, strict=True)
