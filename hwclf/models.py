"""The networks of the study: a registry of architectures, each a short function returning a `keras.Model`.

Three families answer "does the blur penalty depend on the network?": the reference CNN of the original
study (`basic`), a residual net (`resnet`) and a depthwise-separable net (`mobilenet`). Each comes with
a Squeeze-and-Excitation twin (`*_se`) built by the same function, so a plain/SE pair differs only in
the SE gates.

Keras 3 API only (no TensorFlow calls here), so the same code runs under any Keras backend. Every
builder takes ``(input_shape=(28, 28, 1), num_classes=26, se_ratio=16)`` and returns an uncompiled model
whose output is softmax probabilities and whose ``name`` is its registry name.

Usage::

    model = compile_model(build_model("resnet_se", num_classes=26))
    model_table()  # [{"arch": "basic", "params": ..., "train_flops_per_image": ...}, ...]
"""

from __future__ import annotations

import math
from typing import Callable

import keras
from keras import layers

from hwclf.errors import UserError

MODELS: dict[str, Callable[..., keras.Model]] = {}

# Keras' default BN momentum (0.99) needs ~500 steps before the moving statistics used at test time
# forget their initial values; the studies here train a few hundred steps, so the statistics follow
# the batches faster (0.9, the PyTorch default).
BN_MOMENTUM = 0.9
SE_GATE_BIAS = 3.0  # SE gates start open: see squeeze_excite


def register_model(name: str):
    """Add a builder to `MODELS` under `name`: the CLI, configs and sweeps find architectures only here."""

    def decorator(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = fn
        return fn

    return decorator


def build_model(name: str, num_classes: int, input_shape=(28, 28, 1), se_ratio: int = 16) -> keras.Model:
    """The one entry point for the rest of the package: a bad arch name is the user's mistake, not a bug."""
    if name not in MODELS:
        raise UserError(f"arch: unknown value {name!r}; allowed: {', '.join(MODELS)}")
    if isinstance(se_ratio, bool) or not isinstance(se_ratio, int) or se_ratio < 1:
        raise UserError(f"se_ratio: must be a whole number >= 1, got {se_ratio!r}")
    return MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes, se_ratio=se_ratio)


def compile_model(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Adam and cross-entropy on integer labels: the same loss as categorical CE on one-hot labels, without
    materialising the one-hot matrix."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def count_params(model: keras.Model) -> int:
    """All weights, trainable or not (BN moving statistics included), as in Keras' "Total params"."""
    return int(model.count_params())


# --------------------------------------------------------------------------------------------------
# Shared building blocks


def squeeze_excite(x, ratio: int, name: str):
    """Squeeze-and-Excitation (Hu et al. 2018): let the net reweight its channels from global context.

    The hidden width has a floor of 4 units so that narrow layers (16 channels at ratio 16) keep a
    bottleneck that can still express something. The gates start open (sigmoid(SE_GATE_BIAS) = 0.95), so a
    fresh SE net computes what its plain twin computes: with Keras' zero bias they start half shut, and the
    four stacked gates of `basic_se` (no BN to undo the scaling) divide its signal by 16 and slowed it to
    78% clean where `basic` reached 90% (3 epochs, femnist-letters; started open it reached ~90%).
    """
    channels = x.shape[-1]
    hidden = max(channels // ratio, 4)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Dense(hidden, activation="relu", name=f"{name}_reduce")(s)
    s = layers.Dense(channels, activation="sigmoid", bias_initializer=keras.initializers.Constant(SE_GATE_BIAS),
                     name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def _conv_bn(x, filters: int, kernel_size: int, name: str, strides: int = 1):
    """Conv without bias followed by BN (the BN shift is the bias); no activation, callers choose it."""
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=f"{name}_conv",
    )(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)


def _classifier(x, num_classes: int):
    # float32 whatever the precision policy: probabilities and the loss stay exact under mixed_bfloat16
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)


# --------------------------------------------------------------------------------------------------
# basic: the reference CNN of the original study


def _vgg_style(input_shape, num_classes, *, name: str, se: bool = False, se_ratio: int = 16) -> keras.Model:
    """Kept exactly as the original study built it (no BN, no dropout, default initialisers), so that the
    plain `basic` numbers are comparable with the study it replicates."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((32, 64, 128, 256), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i}_conv1")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i}_conv2")(x)
        if se:
            x = squeeze_excite(x, se_ratio, name=f"block{i}_se")
        # padding='same' keeps the odd 7x7 map: 28 -> 14 -> 7 -> 4 -> 2
        x = layers.MaxPooling2D(2, padding="same", name=f"block{i}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="fc")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name=name)


@register_model("basic")
def basic(input_shape=(28, 28, 1), num_classes=26, se_ratio=16):
    """The reference: the network whose blur penalty the study set out to measure."""
    return _vgg_style(input_shape, num_classes, name="basic")


@register_model("basic_se")
def basic_se(input_shape=(28, 28, 1), num_classes=26, se_ratio=16):
    """The reference with an SE gate closing each conv block (before the pool)."""
    return _vgg_style(input_shape, num_classes, name="basic_se", se=True, se_ratio=se_ratio)


# --------------------------------------------------------------------------------------------------
# resnet: ResNet-20, the CIFAR variant of He et al. (2016), on 28x28


def _residual_block(x, filters: int, strides: int, name: str, se: bool, se_ratio: int):
    """Basic block; the projection shortcut (1x1 conv + BN) only where the shape changes."""
    shortcut = x
    h = _conv_bn(x, filters, 3, name=f"{name}_1", strides=strides)
    h = layers.ReLU(name=f"{name}_1_relu")(h)
    h = _conv_bn(h, filters, 3, name=f"{name}_2")
    if se:  # SE-ResNet: recalibrate the residual branch before it joins the identity
        h = squeeze_excite(h, se_ratio, name=f"{name}_se")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, name=f"{name}_shortcut", strides=strides)
    x = layers.Add(name=f"{name}_add")([shortcut, h])
    return layers.ReLU(name=f"{name}_out")(x)


def _resnet20(input_shape, num_classes, *, name: str, se: bool = False, se_ratio: int = 16) -> keras.Model:
    """Deeper than `basic` at a fraction of its parameters: does depth with skip connections change how
    blur hurts? Stages of 16, 32, 64 filters at 28x28, 14x14, 7x7; 3 blocks each (6*3 + 2 = 20 layers)."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn(inputs, 16, 3, name="stem")
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _residual_block(x, filters, strides, f"stage{stage}_block{block}", se, se_ratio)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name=name)


@register_model("resnet")
def resnet(input_shape=(28, 28, 1), num_classes=26, se_ratio=16):
    """ResNet-20: the standard small-image residual net."""
    return _resnet20(input_shape, num_classes, name="resnet")


@register_model("resnet_se")
def resnet_se(input_shape=(28, 28, 1), num_classes=26, se_ratio=16):
    """SE-ResNet-20: SE on each residual branch, before the add."""
    return _resnet20(input_shape, num_classes, name="resnet_se", se=True, se_ratio=se_ratio)


# --------------------------------------------------------------------------------------------------
# mobilenet: MobileNetV2-style inverted residuals, built for 28x28

# (expansion t, output channels c, repeats n, stride of the first repeat s), as in Table 2 of Sandler et
# al. (2018), shortened and with fewer stride-2 steps, because the input is 28x28 rather than 224x224.
# Channels are scaled by the width multiplier alpha = 0.5 (MobileNetV2-0.5, rounded to multiples of 8).
MOBILENET_WIDTH = 0.5
MOBILENET_BLOCKS = (
    (1, 16, 1, 1),  # 28x28
    (6, 24, 2, 2),  # 14x14
    (6, 32, 3, 1),  # 14x14
    (6, 64, 2, 2),  # 7x7
    (6, 96, 2, 1),  # 7x7
    (6, 160, 2, 1),  # 7x7
)
MOBILENET_STEM = 32
MOBILENET_HEAD = 640


def _width(channels: int, alpha: float = MOBILENET_WIDTH, divisor: int = 8) -> int:
    """Scale by the width multiplier, rounded to a multiple of 8 as in MobileNetV2 (never below 90%)."""
    scaled = max(divisor, int(channels * alpha + divisor / 2) // divisor * divisor)
    return scaled + divisor if scaled < 0.9 * channels * alpha else scaled


def _relu6(name: str):
    return layers.ReLU(max_value=6.0, name=name)


def _inverted_residual(x, expansion: int, filters: int, strides: int, name: str, se: bool, se_ratio: int):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear); residual add when the shape is kept."""
    in_channels = x.shape[-1]
    h = x
    if expansion != 1:
        h = _relu6(f"{name}_expand_relu")(_conv_bn(h, in_channels * expansion, 1, name=f"{name}_expand"))
    h = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw_conv")(h)
    h = _relu6(f"{name}_dw_relu")(layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(h))
    if se:  # MobileNetV3 places SE on the expanded, depthwise-filtered features
        h = squeeze_excite(h, se_ratio, name=f"{name}_se")
    h = _conv_bn(h, filters, 1, name=f"{name}_project")  # linear bottleneck: no activation
    if strides == 1 and in_channels == filters:
        h = layers.Add(name=f"{name}_add")([x, h])
    return h


def _mobilenet(input_shape, num_classes, *, name: str, se: bool = False, se_ratio: int = 16) -> keras.Model:
    """Depthwise-separable convs see a 3x3 neighbourhood per channel only: is such a net more or less
    fragile under blur? `keras.applications.MobileNetV2` refuses inputs below 32x32, so it is built here.

    Block table at width multiplier 0.5 (t = expansion, c = output channels after scaling, n = repeats,
    s = stride of the first repeat; MOBILENET_BLOCKS holds the unscaled widths):

    ======================  ===  ====  ===  ===  ==========
    stage                   t    c     n    s    output
    ======================  ===  ====  ===  ===  ==========
    stem conv 3x3+BN+ReLU6  -    16    1    1    28x28x16
    inverted residual       1    8     1    1    28x28x8
    inverted residual       6    16    2    2    14x14x16
    inverted residual       6    16    3    1    14x14x16
    inverted residual       6    32    2    2    7x7x32
    inverted residual       6    48    2    1    7x7x48
    inverted residual       6    80    2    1    7x7x80
    conv 1x1 + BN + ReLU6   -    320   1    1    7x7x320
    global average pool     -    320   -    -    320
    dense softmax           -    C     -    -    C
    ======================  ===  ====  ===  ===  ==========

    12 inverted residuals (17 in the ImageNet model, whose table this follows from its second row on, with
    one stride-2 step fewer and no 320-channel row); the stem keeps stride 1 because the input is small.
    Width 0.5 (MobileNetV2-0.5): at full width, depthwise convs and the many BN layers (memory-bound on
    a CPU, not FLOP-bound) made it ~4x slower per image than `basic` (92 vs 374 images/s on one core),
    too slow for a 90-trial study on 2 cores; at 0.5 it runs ~190 images/s and has about as many
    parameters as the ResNet-20, which makes the comparison fairer, not weaker.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = _relu6("stem_relu")(_conv_bn(inputs, _width(MOBILENET_STEM), 3, name="stem"))
    index = 0
    for expansion, filters, repeats, first_stride in MOBILENET_BLOCKS:
        for r in range(repeats):
            index += 1
            strides = first_stride if r == 0 else 1
            x = _inverted_residual(x, expansion, _width(filters), strides, f"block{index}", se, se_ratio)
    x = _relu6("head_relu")(_conv_bn(x, _width(MOBILENET_HEAD), 1, name="head"))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name=name)


@register_model("mobilenet")
def mobilenet(input_shape=(28, 28, 1), num_classes=26, se_ratio=16):
    """MobileNetV2-style net for 28x28 inputs."""
    return _mobilenet(input_shape, num_classes, name="mobilenet")


@register_model("mobilenet_se")
def mobilenet_se(input_shape=(28, 28, 1), num_classes=26, se_ratio=16):
    """MobileNetV2-style net with SE after each depthwise conv, as in MobileNetV3."""
    return _mobilenet(input_shape, num_classes, name="mobilenet_se", se=True, se_ratio=se_ratio)


# --------------------------------------------------------------------------------------------------
# Cost: parameters and FLOPs, to put accuracy next to what it costs

TRAINING_FLOPS_FACTOR = 3  # forward + backward (gradients w.r.t. activations and weights) ~ 3x forward

_FREE = (  # layers that only move data (Dropout's mask is neglected)
    layers.InputLayer, layers.Flatten, layers.Reshape, layers.Permute, layers.Dropout,
    layers.SpatialDropout2D, layers.ZeroPadding2D, layers.Cropping2D, layers.Identity, layers.Concatenate,
)
_POOLING = (
    layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
    layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D,
    layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D,
    layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D, layers.GlobalAveragePooling3D,
)
_MERGE = (layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Minimum)
_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)


def _leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a nested model (Functional or Sequential) used as a layer
            yield from _leaf_layers(layer)
        else:
            yield layer


def _elements(tensor) -> int:
    """Elements per image: every dimension but the batch one."""
    dims = tuple(tensor.shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(f"FLOP count needs a fixed input shape, got {tuple(tensor.shape)}")
    return math.prod(dims)


def _has_activation(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") != "linear"


def _layer_flops(layer) -> int:
    """Forward FLOPs of one call of `layer` for one image. A multiply-add is 2 FLOPs (the bias add is
    folded into the accumulation); element-wise layers (BN, activations, add, multiply, softmax) count
    1 FLOP per output element; pooling counts 1 FLOP per input element (one compare or add each)."""
    if isinstance(layer, _FREE):
        return 0
    inputs = keras.tree.flatten(layer.input)
    outputs = keras.tree.flatten(layer.output)
    n_out = sum(_elements(t) for t in outputs)
    fused = n_out if _has_activation(layer) else 0
    if isinstance(layer, layers.DepthwiseConv2D):  # one k*k filter per output channel
        return 2 * math.prod(layer.kernel_size) * n_out + fused
    if isinstance(layer, layers.SeparableConv2D):
        positions = n_out // layer.filters
        depthwise_channels = inputs[0].shape[-1] * layer.depth_multiplier
        depthwise = 2 * math.prod(layer.kernel_size) * depthwise_channels * positions
        return depthwise + 2 * depthwise_channels * n_out + fused
    if isinstance(layer, _CONV):  # 2 * k*k * cin/groups per output element (= per position and cout)
        cin = inputs[0].shape[-1 if layer.data_format == "channels_last" else 1]
        return 2 * math.prod(layer.kernel_size) * (cin // layer.groups) * n_out + fused
    if isinstance(layer, layers.Dense):  # 2 * in per output element
        return 2 * inputs[0].shape[-1] * n_out + fused
    if isinstance(layer, _POOLING):
        return sum(_elements(t) for t in inputs)
    if isinstance(layer, _MERGE):
        return (len(inputs) - 1) * n_out
    if layer.weights and not isinstance(layer, (layers.BatchNormalization, layers.LayerNormalization)):
        raise NotImplementedError(
            f"no FLOP rule for layer {layer.name!r} ({type(layer).__name__}); add one to hwclf.models._layer_flops"
        )
    return n_out  # element-wise: BN, LayerNorm, ReLU, Activation, Softmax, Rescaling, ...


def forward_flops_per_image(model: keras.Model) -> int:
    """Forward FLOPs for one image, summed over the layers (nested models included) from their input and
    output shapes. A layer shared between several calls is counted for its first call only."""
    return int(sum(_layer_flops(layer) for layer in _leaf_layers(model)))


def training_flops_per_image(model: keras.Model) -> int:
    """What one training image costs: forward + backward ~ 3x the forward FLOPs. Lets a sweep report
    accuracy per unit of compute, independent of the machine."""
    return TRAINING_FLOPS_FACTOR * forward_flops_per_image(model)


def model_table(num_classes: int = 26, input_shape=(28, 28, 1)) -> list[dict]:
    """Size and cost of every registered architecture, for the README and `hwclf models`."""
    rows = []
    for name in MODELS:
        model = build_model(name, num_classes=num_classes, input_shape=input_shape)
        flops = training_flops_per_image(model)
        rows.append({"arch": name, "params": count_params(model), "train_flops_per_image": flops})
    return rows
