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


def test_loader_runs_once_before_the_first_lookup_and_not_on_register():
    calls = []

    def loader():
        calls.append(1)
        reg.register("builtin", 1)
        assert "builtin" in reg  # a lookup inside the loader sees what is registered so far

    reg: Registry = Registry("thing", loader=loader)
    reg.register("early", 0)
    assert calls == []
    assert reg.names() == ["builtin", "early"] and calls == [1]
    assert reg.get("builtin") == 1 and len(reg) == 2 and calls == [1]


def test_a_failing_loader_is_retried_on_the_next_lookup():
    attempts = []

    def loader():
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("boom")

    reg: Registry = Registry("thing", loader=loader)
    with pytest.raises(ImportError, match="boom"):
        reg.names()
    assert reg.names() == [] and len(attempts) == 2


def test_base_type_is_checked_at_registration_and_lazy_targets_when_resolved():
    reg: Registry = Registry("number", base=int)
    reg.register("one", 1)
    with pytest.raises(TypeError, match=r"number 'half' must be a int, got float"):
        reg.register("half", 0.5)
    reg.register("sep", "os.path:sep")  # a str: checked only when imported
    with pytest.raises(TypeError, match=r"number 'sep' must be a int, got str"):
        reg.get("sep")
    with pytest.raises(ValueError, match="module:attr"):
        reg.register("bad", "no_colon")


def test_aliases_and_item_access():
    reg: Registry = Registry("thing")
    reg.register("alpha", 1, aliases=["a", "al"])
    assert reg.aliases("a") == ["a", "al"] and reg["al"] == 1
    with pytest.raises(UnknownNameError):
        reg["beta"]
