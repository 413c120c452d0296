"""Presets: every one builds, and the named sizes are what they say."""

import pytest

import augment
import models
import presets


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_builds_its_model_and_augmentations(name):
    """Each preset's model builds with weights to train, or (templates) with its buffers."""
    preset = presets.PRESETS[name]
    model = models.build(preset.model, preset.data.num_features, 10)
    trainable = preset.model.name not in models.TEMPLATE_MODELS
    assert (models.num_parameters(model) > 0) == trainable
    assert len(model.state_dict()) > 0
    augment.build(preset.augment, preset.data)  # refuses a combination it cannot apply


def test_preset_sizes():
    """article10 is the series' 117k-parameter Transformer; hybrid-large is Kaggle-sized."""
    article10 = presets.PRESETS["article10"]
    assert models.num_parameters(models.build(article10.model, 260, 10)) == 117_450
    hybrid_large = presets.PRESETS["hybrid-large"].model
    assert 1_000_000 < models.num_parameters(models.build(hybrid_large, 260, 250)) < 2_000_000


def test_the_default_mirrors_left_handed_clips_and_flips():
    default = presets.PRESETS[presets.DEFAULT]
    assert default.data.mirror_left and default.augment.flip > 0
    assert default.model.attention_dropout == 0.0 and default.train.optimizer == "adamw"
