"""Every registered dataset: its converter imports, its options are strict, a missing source is a clear error."""

import pytest

from partaware.datasets import DATASETS, prepare_dataset
from partaware.errors import DatasetError, SpecError


@pytest.mark.parametrize("name", DATASETS.names())
def test_converter_imports_and_rejects_unknown_options(name, store):
    with pytest.raises(SpecError, match="no_such_option: unknown field"):
        prepare_dataset(store, name, options={"no_such_option": 1})


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if n != "synthetic"])
def test_real_datasets_need_a_source(name, store, tmp_path):
    with pytest.raises(DatasetError, match="--source is required"):
        prepare_dataset(store, name)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=str(empty)):
        prepare_dataset(store, name, source=str(empty))


def test_paper_table_names_are_aliases():
    assert DATASETS.resolve("pascal-part-193") == "pascal-part"
    assert DATASETS.resolve("ade20k-object-59") == "ade20k-object"
    assert DATASETS.resolve("cub-200-2011") == "cub"
