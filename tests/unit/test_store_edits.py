"""The store edits the trainers serve: names checked, deletes atomic, export options validated."""

from __future__ import annotations

import pytest

from forgeway.core.errors import InvalidArgument, NotFound
from forgeway.core.modelstore import ModelStore, entry_name
from forgeway.services.training.store import export_options


def entry(store: ModelStore, name: str) -> None:
    with store.writing(name) as folder:
        (folder / "weights.bin").write_bytes(b"x" * 10)
        ModelStore.write_metadata(folder, name=name)


@pytest.mark.parametrize("name", ["../up", "a/b", "", ".hidden", "x" * 129])
def test_names_that_are_not_store_entries_are_refused_naming_the_field(name):
    with pytest.raises(InvalidArgument) as refused:
        entry_name(name, "output_name")
    assert refused.value.field == "output_name"


def test_delete_removes_the_entry_and_leaves_nothing_behind(tmp_path):
    store = ModelStore(tmp_path / "models")
    entry(store, "kept")
    entry(store, "doomed")
    store.delete("doomed")
    assert store.names() == ["kept"] and sorted(p.name for p in store.root.iterdir()) == ["kept"]
    with pytest.raises(NotFound) as missing:
        store.delete("doomed")
    assert "known: kept" in missing.value.message
    with pytest.raises(InvalidArgument):
        store.delete("../kept")
    assert store.exists("kept")


def test_export_options_name_what_is_wrong():
    assert export_options({}) == "f16" and export_options({"outtype": "q8_0"}) == "q8_0"
    with pytest.raises(InvalidArgument) as unknown:
        export_options({"quantize": "q4"})
    assert unknown.value.field == "options.quantize"
    with pytest.raises(InvalidArgument) as bad:
        export_options({"outtype": "q2"})
    assert bad.value.field == "options.outtype" and "f32, f16, q8_0" in bad.value.message
