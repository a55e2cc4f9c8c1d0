import pytest

from skelcl.config import CONFIG_DIR, load_config, parse_override
from skelcl.errors import ConfigError


def test_dotted_override_parses_yaml_values():
    assert parse_override("optim.lr=0.1") == {"optim": {"lr": 0.1}}
    assert parse_override("augment=[rotate, shear]") == {"augment": ["rotate", "shear"]}


def test_load_bundled_config_with_overrides():
    cfg = load_config("sbu-paper", ["optim.epochs=3", "data.protocol=fold2", "data.preprocess.frames=20"])
    assert cfg.optim.epochs == 3 and cfg.data.protocol == "fold2"
    assert cfg.data.preprocess["frames"] == 20 and cfg.data.preprocess["persons"] == 2
    assert cfg.contrast.temperature == 0.06


@pytest.mark.parametrize("path", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_bundled_config_loads(path):
    cfg = load_config(path)
    assert cfg.optim.epochs > 0


def test_unknown_key_and_bad_type_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="expected true/false"):
        load_config(None, ["contrast.normalize=yes please"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no-such-config")


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 1e-3 as a string; skelcl reads it as the number a user meant, as YAML 1.2 does
    assert load_config("synthetic", ["optim.lr=1e-3"]).optim.lr == pytest.approx(1e-3)
    assert load_config("synthetic", ["contrast.temperature=5E-2"]).contrast.temperature == pytest.approx(0.05)
    f = tmp_path / "c.yaml"
    f.write_text("base: synthetic.yaml\noptim: {lr: 3e-4}\n")
    assert load_config(str(f)).optim.lr == pytest.approx(3e-4)
    assert load_config("synthetic", ["augment=[{shear: {amplitude: 5e-1}}]"]).augment == [{"shear": {"amplitude": 0.5}}]
    with pytest.raises(ConfigError, match="expected a number"):
        load_config("synthetic", ["optim.lr=1e-3x"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config("synthetic", ["optim.epochs=1e2"])
