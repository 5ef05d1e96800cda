"""hwclf.models: the registry, the architectures' shapes and sizes, the FLOP counter, and that each net learns."""

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from hwclf import models
from hwclf.errors import UserError
from hwclf.models import (
    MODELS,
    build_model,
    compile_model,
    count_params,
    forward_flops_per_image,
    model_table,
    training_flops_per_image,
)

NAMES = ["basic", "basic_se", "resnet", "resnet_se", "mobilenet", "mobilenet_se"]
PAIRS = [("basic", "basic_se"), ("resnet", "resnet_se"), ("mobilenet", "mobilenet_se")]


@pytest.fixture(scope="module")
def built():
    """Each architecture for 26 classes, built once for the whole module (building is most of the cost)."""
    return {name: build_model(name, num_classes=26) for name in NAMES}


def conv_flops(k, cin, cout, h, w):
    return 2 * k * k * cin * cout * h * w


# --- registry -------------------------------------------------------------------------------------


def test_the_six_architectures_are_registered():
    assert list(MODELS) == NAMES


def test_unknown_arch_is_a_one_line_user_error_listing_the_allowed_names():
    with pytest.raises(UserError) as e:
        build_model("vgg", num_classes=26)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("arch: unknown value 'vgg'; allowed: ")
    for name in NAMES:
        assert name in message


def test_bad_se_ratio_is_a_user_error():
    with pytest.raises(UserError, match="se_ratio"):
        build_model("basic_se", num_classes=26, se_ratio=0)


def test_builders_share_one_signature():
    for name, fn in MODELS.items():
        params = inspect.signature(fn).parameters
        assert list(params) == ["input_shape", "num_classes", "se_ratio"], name
        assert params["input_shape"].default == (28, 28, 1)
        assert params["num_classes"].default == 26
        assert params["se_ratio"].default == 16


# --- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_model_outputs_probabilities(name, built):
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    for num_classes, model in ((26, built[name]), (10, build_model(name, num_classes=10))):
        assert model.name == name
        assert tuple(model.output.shape) == (None, num_classes)
        probs = keras.ops.convert_to_numpy(model(images, training=False))
        assert probs.shape == (3, num_classes)
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_basic_is_the_reference_cnn(built):
    model = built["basic"]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" and c.activation.__name__ == "relu" for c in convs)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 4 and all(p.padding == "same" for p in pools)
    assert [tuple(p.output.shape)[1:3] for p in pools] == [(14, 14), (7, 7), (4, 4), (2, 2)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [(d.units, d.activation.__name__) for d in dense] == [(256, "relu"), (26, "softmax")]
    assert not any(isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout)) for layer in model.layers)
    # Hand count: (3*3*cin + 1) * cout per conv, (in + 1) * out per dense; flatten is 2*2*256 = 1024.
    channels = [1, 32, 32, 64, 64, 128, 128, 256, 256]
    conv_params = sum((9 * cin + 1) * cout for cin, cout in zip(channels, channels[1:]))
    expected = conv_params + (1024 + 1) * 256 + (256 + 1) * 26
    assert expected == 1_440_762
    assert count_params(model) == expected


def test_mobilenet_is_v2_at_width_half_reaching_7x7(built):
    model = built["mobilenet"]
    assert models.MOBILENET_WIDTH == 0.5
    last_block = model.get_layer("block12_project_bn")
    assert tuple(last_block.output.shape)[1:] == (7, 7, 80)  # 160 x 0.5
    assert tuple(model.get_layer("head_relu").output.shape)[1:] == (7, 7, 320)
    # Residual adds where stride 1 and channels unchanged: every repeat after the first of a row, plus the
    # first of the 32-channel row, whose scaled width (16) equals the row before it.
    repeats = [n for _, _, n, _ in models.MOBILENET_BLOCKS]
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == sum(repeats) - len(repeats) + 1 == 7


def test_resnet_is_resnet20(built):
    model = built["resnet"]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 3x3 convs + the classifier
    shortcuts = [layer.name for layer in model.layers if layer.name.endswith("shortcut_conv")]
    assert shortcuts == ["stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv"]
    assert tuple(model.get_layer("pool").input.shape)[1:] == (7, 7, 64)


# --- Squeeze-and-Excitation ----------------------------------------------------------------------


@pytest.mark.parametrize("plain,se", PAIRS)
def test_se_twin_adds_parameters_and_flops_to_the_same_net(plain, se, built):
    plain_model, se_model = built[plain], built[se]
    assert count_params(se_model) > count_params(plain_model)
    assert training_flops_per_image(se_model) / training_flops_per_image(plain_model) > 1
    # Same net otherwise: removing the SE layers leaves the plain net's layer names.
    se_free = [layer.name for layer in se_model.layers if "_se_" not in layer.name]
    assert sorted(se_free) == sorted(layer.name for layer in plain_model.layers)


def se_widths(model):
    """(channels, hidden units) of every SE block."""
    return [
        (model.get_layer(layer.name.replace("_reduce", "_expand")).units, layer.units)
        for layer in model.layers
        if layer.name.endswith("_se_reduce")
    ]


def test_se_hidden_width_is_channels_over_ratio_with_a_floor_of_4(built):
    assert se_widths(built["basic_se"]) == [(32, 4), (64, 4), (128, 8), (256, 16)]
    wide = se_widths(build_model("resnet_se", num_classes=26, se_ratio=64))
    assert wide[0] == (16, 4)  # 16 // 64 = 0 -> floor of 4
    assert all(hidden == max(c // 64, 4) for c, hidden in wide)
    assert len(se_widths(built["resnet_se"])) == 9
    assert len(se_widths(built["mobilenet_se"])) == 12
    assert se_widths(built["basic"]) == []


def test_se_placement(built):
    # basic_se: after the block's second conv, before its pool
    basic = built["basic_se"]
    assert basic.get_layer("block1_pool").input is basic.get_layer("block1_se_scale").output
    # resnet_se: on the residual branch, before the add
    resnet = built["resnet_se"]
    add_inputs = resnet.get_layer("stage1_block1_add").input
    assert any(t is resnet.get_layer("stage1_block1_se_scale").output for t in add_inputs)
    # mobilenet_se: after the depthwise conv, before the projection
    mobile = built["mobilenet_se"]
    assert mobile.get_layer("block2_project_conv").input is mobile.get_layer("block2_se_scale").output


# --- FLOPs ---------------------------------------------------------------------------------------


def test_flops_of_a_tiny_model_match_a_hand_count():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)  # valid: 6x6x4
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    conv = 2 * 3 * 3 * 2 * 4 * 6 * 6  # multiply-adds of the conv, 2 FLOPs each
    relu = 6 * 6 * 4
    dense = 2 * (6 * 6 * 4) * 3
    softmax = 3
    assert forward_flops_per_image(model) == conv + relu + dense + softmax == 6195
    assert training_flops_per_image(model) == 3 * 6195


def test_flops_walk_nested_models():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)], name="inner")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    assert forward_flops_per_image(model) == 2 * 4 * 5 + 2 * 5 * 2


def test_flops_of_depthwise_and_grouped_convs():
    inputs = keras.Input((10, 10, 8))
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(inputs)  # 5x5x8
    x = keras.layers.Conv2D(8, 1, groups=4)(x)  # 5x5x8, 2 input channels per group
    model = keras.Model(inputs, x)
    assert forward_flops_per_image(model) == 2 * 9 * 8 * 25 + 2 * 1 * 2 * 8 * 25


def test_basic_flops_match_the_analytic_count(built):
    convs = [(1, 32, 28), (32, 32, 28), (32, 64, 14), (64, 64, 14), (64, 128, 7), (128, 128, 7),
             (128, 256, 4), (256, 256, 4)]
    analytic = sum(conv_flops(3, cin, cout, s, s) for cin, cout, s in convs) + 2 * 1024 * 256 + 2 * 256 * 26
    counted = forward_flops_per_image(built["basic"])
    assert counted >= analytic  # the rest is element-wise ops
    assert counted == pytest.approx(analytic, rel=0.01)
    assert training_flops_per_image(built["basic"]) == 3 * counted


def test_unknown_weighted_layer_is_not_silently_free():
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Embedding(10, 3)(inputs))
    with pytest.raises(NotImplementedError, match="Embedding"):
        forward_flops_per_image(model)


def test_model_table_has_one_row_per_arch():
    rows = model_table(num_classes=26)
    assert [r["arch"] for r in rows] == NAMES
    for row in rows:
        assert set(row) == {"arch", "params", "train_flops_per_image"}
        assert isinstance(row["params"], int) and row["params"] > 0
        assert isinstance(row["train_flops_per_image"], int) and row["train_flops_per_image"] > 0
    by_arch = {r["arch"]: r for r in rows}
    assert by_arch["basic"]["params"] == 1_440_762
    # mobilenet at width 0.5: about as many parameters as the ResNet-20, about a third of basic's FLOPs
    assert 0.5 < by_arch["mobilenet"]["params"] / by_arch["resnet"]["params"] < 1.5
    ratio = by_arch["mobilenet"]["train_flops_per_image"] / by_arch["basic"]["train_flops_per_image"]
    assert 0.2 <= ratio <= 0.5


# --- learning ------------------------------------------------------------------------------------


def halves_task(n, seed=0):
    """Two classes anyone can learn: the bright half of a noisy image is the left one or the right one."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.random((n, 28, 28, 1), dtype=np.float32) * 0.3
    x[y == 0, :, :14] += 0.7
    x[y == 1, :, 14:] += 0.7
    return x, y


@pytest.mark.parametrize("name", NAMES)
def test_every_model_learns_a_trivial_task(name):
    keras.utils.set_random_seed(0)
    x, y = halves_task(32)
    model = compile_model(build_model(name, num_classes=2), learning_rate=1e-3)
    # 8 steps: eager is faster than tracing a training graph this short (~10 s for mobilenet).
    model.run_eagerly = True
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    # Training-mode numbers from the history: after 8 steps the BN moving averages are still far from
    # the batch statistics, so inference-mode accuracy would measure those, not learning.
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] > 0.6  # chance is 0.5


def test_compile_model_uses_adam_and_sparse_crossentropy():
    model = compile_model(build_model("basic", num_classes=3), learning_rate=0.01)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(0.01)
    assert model.loss == "sparse_categorical_crossentropy"


# --- Keras 3 only --------------------------------------------------------------------------------


def test_module_uses_no_tensorflow_api():
    source = inspect.getsource(models)
    assert not re.search(r"\btf\.", source)
    assert not re.search(r"^\s*(import|from)\s+tensorflow", source, re.MULTILINE)


@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed; the TF backend tests cover the same code"
)
def test_models_build_and_run_under_the_jax_backend():
    script = textwrap.dedent(
        """
        import numpy as np
        import keras
        from hwclf.models import MODELS, build_model, training_flops_per_image
        assert keras.backend.backend() == "jax"
        for name in MODELS:
            model = build_model(name, num_classes=5)
            probs = np.asarray(model(np.zeros((2, 28, 28, 1), "float32")))
            assert probs.shape == (2, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
            assert training_flops_per_image(model) > 0
        print("ok")
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok" in done.stdout
