"""The model store's shared rules: paths confined to allowed roots, and the stamp that says the store changed."""

from __future__ import annotations

import pytest

from forgeway.core.errors import PermissionDenied
from forgeway.core.modelstore import ModelStore, confine


def test_paths_under_a_root_resolve_and_others_are_denied_naming_the_field(tmp_path):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    (allowed / "model").mkdir(parents=True)
    other.mkdir()
    assert confine(allowed / "model", [tmp_path / "x", allowed], "source") == (allowed / "model").resolve()
    for escape in (other, allowed / ".." / "other", "/etc"):
        with pytest.raises(PermissionDenied) as caught:
            confine(escape, [allowed], "source")
        assert caught.value.metadata == {"field": "source"}
        assert caught.value.message.startswith(f"source: {escape} is outside the allowed roots")
        assert str(allowed) in caught.value.message


def test_a_link_out_of_a_root_is_judged_by_where_it_leads(tmp_path):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (allowed / "link").symlink_to(other)
    with pytest.raises(PermissionDenied):
        confine(allowed / "link", [allowed], "source")
    (other / "back").symlink_to(allowed)
    assert confine(other / "back", [allowed], "source") == allowed.resolve()


def test_the_stamp_moves_when_an_entry_is_published_replaced_or_removed(tmp_path):
    store = ModelStore(tmp_path / "models")
    empty = store.stamp()
    assert empty == store.stamp() and empty.newest_change == 0  # no store folder yet
    with store.writing("m") as folder:
        ModelStore.write_metadata(folder, provider="trl")
    first = store.stamp(["m"])
    assert first != empty and first == store.stamp(["m"])
    with store.writing("m") as folder:  # replaced under the same name
        ModelStore.write_metadata(folder, provider="trl")
    replaced = store.stamp(["m"])
    assert replaced != first
    (store.root / "m" / "forgeway.json").unlink()
    assert store.stamp(["m"]) != replaced
