import pytest

from partaware.errors import UnknownNameError
from partaware.registry import Registry


def test_names_aliases_and_lazy_targets():
    reg: Registry = Registry("thing")
    reg.register("alpha", 1, aliases=["a"])
    reg.register("path", "os.path:join")
    assert reg.resolve("a") == "alpha"
    assert reg.get("a") == 1
    import os.path

    assert reg.get("path") is os.path.join
    assert reg.names() == ["alpha", "path"] and "a" in reg and len(reg) == 2


def test_unknown_name_lists_valid_ones_and_suggests():
    reg: Registry = Registry("encoder")
    reg.register("dino_vitb16", 1)
    reg.register("mae_vitb16", 2)
    with pytest.raises(UnknownNameError) as err:
        reg.get("dino_vitb1")
    msg = str(err.value)
    assert "unknown encoder 'dino_vitb1'" in msg
    assert "Did you mean 'dino_vitb16'" in msg
    assert "dino_vitb16, mae_vitb16" in msg
    assert isinstance(err.value, LookupError)


def test_clashing_names_raise():
    reg: Registry = Registry("thing")
    reg.register("x", 1, aliases=["y"])
    with pytest.raises(ValueError, match="already registered"):
        reg.register("y", 2)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("z", 2, aliases=["x"])
