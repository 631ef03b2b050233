"""unijob.testing.vendor: the field-by-field comparison the adapters' vendor-SDK tests rely on."""

from __future__ import annotations

import pytest

from unijob.testing.vendor import assert_explained, compare


def test_compare_sorts_every_leaf_into_same_differ_and_one_sided():
    vendor = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "only": {"v": True}, "empty": {}}
    ours = {"a": 1, "b": {"c": [1, 3, 4], "d": "y"}, "mine": "z"}
    d = compare(vendor, ours)
    assert d.same == ["a", "b.c[0]"]
    assert d.differ == {"b.c[1]": (2, 3), "b.d": ("x", "y")}
    assert d.vendor_only == {"only.v": True, "empty": {}}
    assert d.ours_only == {"b.c[2]": 4, "mine": "z"}


def test_assert_explained_fails_on_unlisted_and_on_stale_entries():
    d = compare({"x": [{"k": 1}], "n": "a"}, {"x": [{"k": 2}], "n": "b", "env": {"U_A": "1", "U_B": "2"}})
    assert_explained(d, differ={"x[0].k": "why", "n": "why"}, vendor_only={}, ours_only={"env.U_*": "why"})
    with pytest.raises(AssertionError, match=r"both set, different: n = \('a', 'b'\)"):
        assert_explained(d, differ={"x[0].k": "why"}, vendor_only={}, ours_only={"env.U_*": "why"})
    with pytest.raises(AssertionError, match="listed 'gone' no longer differs"):
        assert_explained(d, differ={"x[0].k": "", "n": ""}, vendor_only={"gone": ""}, ours_only={"env.*": ""})
    with pytest.raises(AssertionError, match=r"only unijob sends: env.U_B"):  # '[' and ']' are literal
        assert_explained(d, differ={"x[*].k": "", "n": ""}, vendor_only={}, ours_only={"env.U_A": ""})
