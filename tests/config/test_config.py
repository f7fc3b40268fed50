import pytest

from vlp.config import Config, ConfigError, config_from_dict, config_to_dict, load_config, preset_names


def test_defaults_build_without_a_preset():
    config = load_config()
    assert isinstance(config, Config)
    assert config.train.lr == pytest.approx(1e-3)


def test_dotted_overrides_are_typed():
    config = load_config(
        None, ["train.lr=1e-4", "model.arch=semvlp", "data.hflip=true", "model.cross_attention_layers=[2,3]"]
    )
    assert config.train.lr == pytest.approx(1e-4)
    assert isinstance(config.train.lr, float)
    assert config.model.arch == "semvlp"
    assert config.data.hflip is True
    assert config.model.cross_attention_layers == [2, 3]


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match="train.max_steps: expected int"):
        load_config(None, ["train.max_steps=1.5"])


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.learning_rate=1e-4"])
    message = str(err.value)
    assert "train.learning_rate" in message
    assert "train.lr" in message and "train.max_steps" in message


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="data.hflip: expected true or false"):
        load_config(None, ["data.hflip=sometimes"])
    with pytest.raises(ConfigError, match="model.text: expected a mapping"):
        load_config(None, ["model.text=3"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["train.lr"])


def test_yaml_file_with_base_preset(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  lr: 0.5\n  max_steps: 7\nobjectives:\n  weights: {mlm: 1.0, itm: 2.0}\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {base}\ntrain:\n  max_steps: 9\nobjectives:\n  weights: {{mlm: 1.0}}\n")
    config = load_config(str(child))
    assert config.train.lr == 0.5 and config.train.max_steps == 9
    # loss weights are replaced as a whole, so a child preset can switch a loss off by leaving it out
    assert config.objectives.weights == {"mlm": 1.0}


def test_missing_preset_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_round_trip_through_a_dict():
    config = load_config(None, ["train.seed=3"])
    assert config_from_dict(config_to_dict(config)) == config


def test_every_shipped_preset_loads():
    for name in preset_names():
        load_config(name)
